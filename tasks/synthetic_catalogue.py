"""The synthetic catalogue with planted relations (mtl_jax/data/synthetic_catalogue.py) as seqio tasks.

Registered on import: 24 binary tasks syncat_f{0..5}_m{0..3} (train 200..3200 examples, validation and
test 200), the mixture syncat_all (every task, rates proportional to size as offline_all) and syncat_equal
(equal rates: TAG affinity needs every pair of tasks in some batch, gin/taskemb/affinity_syncat.gin). A closed
word vocabulary of 400 words (as tasks/synthetic.py's, larger): TASK_FEATURE_LENGTHS 32 fits every input.
"""

from __future__ import annotations

import functools

from mtl_jax.data import synthetic as syn
from mtl_jax.data import synthetic_catalogue as cat
from mtl_jax.input import mixing
from mtl_jax.data.word_vocab import WordVocabulary
from tasks import registration
from tasks.synthetic import LABEL_NAMES

VOCABULARY = WordVocabulary(cat.VOCAB_SIZE)

ALL = "syncat_all"
EQUAL = "syncat_equal"


def _examples(name: str, split: str) -> list:
  return cat.generate(name, split)


def register() -> list[str]:
  names = cat.task_names()
  for name in names:
    sizes = {s: cat.config(name).num_examples(s) for s in syn.SPLITS}
    registration.add_task(name, kind="classification", vocabulary=VOCABULARY, label_names=LABEL_NAMES,
                          examples_fn=functools.partial(_examples, name), num_examples=sizes)
  registration.add_mixture(ALL, [(n, mixing.proportional(maximum=3000)) for n in names])
  registration.add_mixture(EQUAL, [(n, 1.0) for n in names])
  return names


TASKS = register()
