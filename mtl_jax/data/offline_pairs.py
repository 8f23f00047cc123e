"""Sentence-pair tasks built from data we ship, so pairs can enter offline grids.

Why: no NLI / paraphrase / STS data ships in a registry package (../shared/DATA.md), and the
transfer studies' first class is sentence pairs. Two pair tasks from the offline corpora, each
needing both texts to be read together (neither is solvable from one text alone):

  chatterbot_pair  answer selection (QNLI-like): does `reply` answer `question`? For every
                   conversation (mtl_jax/data/chatterbot_choice.py) one positive (its own reply)
                   and one negative (a reply of a conversation of ANOTHER category and of none in
                   the question's own, drawn with a fixed seed per question). Balanced, 2-way.
                   Split by the question's hash, the rule chatterbot_choice and chatterbot_intent
                   use, so a question is in the same split in all three tasks.
  vader_pair       comparative valence (STS-B-like regression): two VADER movie sentences of one
                   split, target = (valence(b) - valence(a)) / 8 in [-1, 1]. Partners are fixed by
                   a hash order within the split; each sentence is in exactly one pair, so a split's
                   pairs never share text with another split's (vader_movie's split rule holds).
Each row's 'text' is what mtl_jax/data/splits.get_split hashes (the question; the first sentence);
tasks/offline_pairs.py replaces it with the joined fields once the split is taken.
"""

from __future__ import annotations

import functools
import random

from mtl_jax.data import chatterbot_choice, corpora, splits


@functools.lru_cache(maxsize=None)
def chatterbot_pair() -> tuple:
  """{'texts': (question, reply), 'label': 1 if the reply answers the question else 0, 'text': the question
  (what the split rule hashes)}."""
  convs = chatterbot_choice._conversations()
  replies_by_category: dict[str, list[str]] = {}
  for _, reply, cat in convs:
    replies_by_category.setdefault(cat, []).append(reply)
  every_reply = {r for rs in replies_by_category.values() for r in rs}
  # a reply shared by two categories is never a negative of either
  negatives = {cat: sorted(every_reply - set(rs)) for cat, rs in replies_by_category.items()}
  out = []
  for question, reply, cat in convs:
    negative = random.Random(splits.text_seed("pair:" + question)).choice(negatives[cat])
    out.append({"texts": (question, reply), "label": 1, "text": question})
    out.append({"texts": (question, negative), "label": 0, "text": question})
  return tuple(out)


@functools.lru_cache(maxsize=None)
def vader_pair() -> tuple:
  """{'texts': (a, b), 'score': (valence(b) - valence(a)) / 8, 'text': a}, pairs within each split."""
  by_split: dict[str, list] = {}
  for e in corpora.load_vader("movie"):
    by_split.setdefault(splits.split_of(e["text"]), []).append(e)
  out = []
  for split in splits.SPLITS:
    rows = sorted(by_split.get(split, []), key=lambda e: (splits.text_seed("vpair:" + e["text"]), e["text"]))
    for a, b in zip(rows[0::2], rows[1::2]):
      out.append({"texts": (a["text"], b["text"]), "score": (b["score"] - a["score"]) / 8.0, "text": a["text"]})
  return tuple(out)
