"""Offline extractive-QA task: wnut16_qa (mtl_jax/data/wnut_qa.py; heads/span_qa.py).

  task       kind     questions  answers                       metric
  wnut16_qa  span_qa  2,035      entities of the asked type;   SQuAD v2.0 EM / F1 (HasAns / NoAns)
                                 877 questions have none

Split by the fixed hash rule on the tweet (mtl_jax/data/splits.py), so a tweet's questions share
a split; vocabulary the offline tasks' (tasks.offline.VOCABULARY), so it mixes with them.
"""

from __future__ import annotations

import functools

from mtl_jax.data import splits, wnut_qa
from tasks import offline, registration


@functools.lru_cache(maxsize=None)
def _split(split: str) -> tuple:
  return tuple(e for e in wnut_qa.load() if splits.split_of(e["context"]) == split)


def examples(split: str) -> list:
  return list(_split(split))


registration.add_task("wnut16_qa", kind="span_qa", vocabulary=offline.VOCABULARY, label_names=("start", "end"),
                      examples_fn=examples)
