"""The 128-task synthetic mixtures (ExT5 has 107 tasks, Muppet ~50): scale tests and benchmarks.

Registered on import, for r in {0, .5, 1}:
  mixtures  synthetic_r{0,50,100}_t128                 128 binary tasks, equal rates
  tasks     synthetic_r{R}_t128_task{t}                families of 16 (`family_of`: family0..7)
Splits are small (400 train / 50 validation / 50 test per task: 51,200 training examples in
all) so 128 tasks stay cheap to generate; otherwise the generator and vocabulary are those of
tasks/synthetic.py (TASK_FEATURE_LENGTHS 32 fits every input).
"""

from __future__ import annotations

import functools

from mtl_jax.data import synthetic as syn
from tasks import registration
from tasks.synthetic import LABEL_NAMES, VOCABULARY, _examples

RELATEDNESS = (0.0, 0.5, 1.0)
SIZES = {"train_examples": 400, "validation_examples": 50, "test_examples": 50}


def config(relatedness: float) -> syn.SyntheticConfig:
  return syn.SyntheticConfig(num_tasks=syn.MANY_TASKS, relatedness=relatedness, **SIZES)


def family_of(task_name: str) -> str:
  """'synthetic_r50_t128_task37' -> 'family2'."""
  return syn.family_of(syn.parse_task_name(task_name)[2])


def register(relatedness: float) -> str:
  cfg = config(relatedness)
  sizes = {s: cfg.num_examples(s) for s in syn.SPLITS}
  for t in range(cfg.num_tasks):
    registration.add_task(cfg.task_name(t), kind="classification", vocabulary=VOCABULARY,
                          label_names=LABEL_NAMES, examples_fn=functools.partial(_examples, cfg, t),
                          num_examples=sizes)
  registration.add_mixture(cfg.mixture_name, [(cfg.task_name(t), 1.0) for t in range(cfg.num_tasks)])
  return cfg.mixture_name


MIXTURES = tuple(register(r) for r in RELATEDNESS)
