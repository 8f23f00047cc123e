"""WNUT-16 entities asked as questions: NER as reading comprehension, SQuAD v2.0 style.

Why: an offline extractive-QA task from data we already ship (mtl_jax/data/corpora.py). The
context is the tweet (its tokens joined by spaces); for each entity type present the question
is 'which <type> is mentioned?' and every entity of that type is a gold answer (text + character
offset); for one type absent from the tweet (drawn with a fixed seed per tweet) the same question
has no answer, so the task also trains and scores the null answer.
"""

from __future__ import annotations

import random

from mtl_jax.data import corpora, splits

TYPES = tuple(t[2:] for t in corpora.WNUT_TAGS if t.startswith("B-"))


def _entities(tokens, tags):
  """[(type, first token, last token)] of the BIO spans."""
  out = []
  for i, tag in enumerate(tags):
    if tag.startswith("B-"):
      out.append([tag[2:], i, i])
    elif tag.startswith("I-") and out and out[-1][0] == tag[2:] and out[-1][2] == i - 1:
      out[-1][2] = i
  return [tuple(e) for e in out]


def question(kind: str) -> str:
  return f"which {kind.replace('-', ' ')} is mentioned?"


def load() -> list[dict]:
  """{'text': question, 'context', 'answers': [{'text', 'answer_start'}] ([] = no answer), 'id'}."""
  out = []
  for n, ex in enumerate(corpora.load_wnut()):
    tokens, tags = ex["tokens"], ex["tags"]
    context = " ".join(tokens)
    starts, pos = [], 0
    for t in tokens:
      starts.append(pos)
      pos += len(t) + 1
    by_type: dict[str, list[dict]] = {}
    for kind, a, b in _entities(tokens, tags):
      text = context[starts[a]:starts[b] + len(tokens[b])]
      by_type.setdefault(kind, []).append({"text": text, "answer_start": starts[a]})
    if not by_type:
      continue
    for kind in sorted(by_type):
      out.append({"text": question(kind), "context": context, "answers": by_type[kind], "id": f"{n}-{kind}"})
    rng = random.Random(splits.text_seed(context))
    absent = rng.choice([t for t in TYPES if t not in by_type])
    out.append({"text": question(absent), "context": context, "answers": [], "id": f"{n}-{absent}"})
  return out
