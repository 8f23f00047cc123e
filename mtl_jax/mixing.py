"""Mixing-rate functions for seqio.Mixture, selectable from gin.

seqio calls a rate function with the Task; we count its training examples through
the task's registered examples function (no cache needed), then apply T5's
`rate_num_examples` recipe: cap at `maximum`, scale by `scale`, temperature
`r ** (1/temperature)`.
"""

from __future__ import annotations

import functools

import seqio


def num_train_examples(task: seqio.Task) -> int:
  n = task.source.num_input_examples("train")
  if n is None:
    n = sum(1 for _ in task.source.get_dataset("train", shuffle=False))
  return int(n)


def _rate(task, *, maximum=None, scale=1.0, temperature=1.0):
  n = float(num_train_examples(task))
  if maximum is not None:
    n = min(n, float(maximum))
  return (n * scale) ** (1.0 / temperature)


def proportional(maximum: int | None = None, scale: float = 1.0, temperature: float = 1.0):
  """Rate proportional to the task's train size (capped, temperature-scaled)."""
  if temperature <= 0:
    raise ValueError(f"mixing temperature must be > 0, got {temperature}")
  return functools.partial(_rate, maximum=maximum, scale=scale, temperature=temperature)
