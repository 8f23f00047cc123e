"""Simple weight averaging (model soups, Wortsman et al. 2022): theta = (1/N) sum_i theta_i.

The baseline every other method must beat, and the fallback for leaves a statistic-based method
(RegMean, Fisher) has no statistic for."""

from __future__ import annotations

import numpy as np

from mtl_jax.merge import base


def mean(finetuned) -> np.ndarray:
  return np.mean(np.stack([np.asarray(f, np.float64) for f in finetuned]), axis=0)


def merge_leaf(path, base_leaf, finetuned, stats, rng):
  del path, base_leaf, stats, rng
  return mean(finetuned)


METHOD = base.register(base.Method("average", merge_leaf, grid={}, uses_base=False))
