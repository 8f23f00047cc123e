"""ChatterBot conversations as multiple choice: which answer replies to this question?

Why: an offline multiple-choice task from data we already ship (the chatterbot-corpus wheel,
mtl_jax/data/corpora.py). Each conversation's first utterance is the context, its reply the
right choice; the distractors are replies from conversations of OTHER categories (so a
'money' question never has another 'money' reply as a wrong answer), drawn with a fixed seed
per question, and the right answer's slot is drawn the same way. Questions repeated in the
corpus keep their first reply (as corpora.load_chatterbot keeps the first utterance).
"""

from __future__ import annotations

import functools
import random
import zipfile

from mtl_jax.data import corpora, splits

NUM_CHOICES = 4


@functools.lru_cache(maxsize=None)
def _conversations() -> tuple:
  """(question, reply, category) of every conversation with a reply, first reply per question."""
  import yaml
  prefix = "chatterbot_corpus/data/english/"
  seen, out = set(), []
  with zipfile.ZipFile(corpora.archive_path("chatterbot")) as z:
    for name in sorted(n for n in z.namelist() if n.startswith(prefix) and n.endswith(".yml")):
      stem = name[len(prefix):-len(".yml")]
      if "/" in stem or stem not in corpora.CHATTERBOT_LABELS:
        continue
      try:
        doc = yaml.safe_load(z.read(name).decode("utf-8"))
      except (yaml.YAMLError, UnicodeDecodeError):
        continue
      for conv in (doc or {}).get("conversations") or []:
        if (isinstance(conv, list) and len(conv) >= 2 and all(isinstance(c, str) for c in conv[:2])):
          question, reply = " ".join(conv[0].split()), " ".join(conv[1].split())
          if question and reply and question.lower() not in seen:
            seen.add(question.lower())
            out.append((question, reply, stem))
  return tuple(out)


def load() -> list[dict]:
  """{'text': question, 'choices': [4 replies], 'label': index of the right one, 'category'}."""
  convs = _conversations()
  by_category: dict[str, list[str]] = {}
  for _, reply, cat in convs:
    by_category.setdefault(cat, []).append(reply)
  out = []
  for question, reply, cat in convs:
    rng = random.Random(splits.text_seed(question))
    pool = sorted({r for c, rs in by_category.items() if c != cat for r in rs} - {reply})
    choices = rng.sample(pool, NUM_CHOICES - 1)
    label = rng.randrange(NUM_CHOICES)
    choices.insert(label, reply)
    out.append({"text": question, "choices": choices, "label": label, "category": cat})
  return out
