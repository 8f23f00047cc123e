"""Task arithmetic (Ilharco et al. 2023): theta = theta_0 + lambda * sum_i (theta_i - theta_0).

lambda is picked on validation (the paper's grid 0.0..1.0; FusionBench reports 0.3 / 0.5 for GLUE)."""

from __future__ import annotations

import numpy as np

from mtl_jax.merge import base


def merge_leaf(path, base_leaf, finetuned, stats, rng, scaling: float = 0.5):
  del path, stats, rng
  return np.asarray(base_leaf, np.float64) + scaling * base.task_vectors(base_leaf, finetuned).sum(0)


METHOD = base.register(base.Method("task_arithmetic", merge_leaf, grid={"scaling": (0.3, 0.5, 0.7, 1.0)}))
