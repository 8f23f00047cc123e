"""Offline multiple-choice task: chatterbot_choice (mtl_jax/data/chatterbot_choice.py).

  task               kind             choices  train  val  test  metric
  chatterbot_choice  multiple_choice  4        ~600   ~70  ~80   accuracy

Split by the fixed hash rule on the question (mtl_jax/data/splits.py), vocabulary the
offline tasks' (tasks.offline.VOCABULARY: SentencePiece or the run's checkpoint), so it
mixes with every offline task. Chance accuracy 0.25.
"""

from __future__ import annotations

import functools

from mtl_jax.data import chatterbot_choice, splits
from tasks import offline, registration

CHOICE_SLOTS = tuple(f"choice{i + 1}" for i in range(chatterbot_choice.NUM_CHOICES))


@functools.lru_cache(maxsize=None)
def _split(split: str) -> tuple:
  return tuple(splits.get_split(chatterbot_choice.load(), split))


def examples(split: str) -> list:
  return list(_split(split))


registration.add_task("chatterbot_choice", kind="multiple_choice", vocabulary=offline.VOCABULARY,
                      label_names=CHOICE_SLOTS, examples_fn=examples)
