"""DARE (Yu et al. 2024, "Language models are Super Mario"): drop and rescale, then merge.

Each entry of each task vector is dropped with probability p and the survivors are scaled by 1/(1-p),
so E[DARE(tau)] = tau. The sparsified vectors are then merged linearly (dare_linear: theta_0 + lambda *
sum_i tau_i', task arithmetic) or by TIES' sign election and disjoint mean (dare_ties, no top-k trim: the
random drop replaces it, as in mergekit). Draws are fixed by (seed, parameter path, row block), tasks in order."""

from __future__ import annotations

import numpy as np

from mtl_jax.merge import base, ties


def drop_and_rescale(tau: np.ndarray, drop_rate: float, rng: np.random.Generator) -> np.ndarray:
  if not 0 <= drop_rate < 1:
    raise ValueError(f"DARE drop_rate must be in [0, 1), got {drop_rate!r}; e.g. 0.5 drops half the entries")
  keep = rng.random(tau.shape) >= drop_rate
  return np.where(keep, tau / (1.0 - drop_rate), 0.0)


def sparsified(base_leaf, finetuned, rng, drop_rate) -> np.ndarray:
  return np.stack([drop_and_rescale(t, drop_rate, rng) for t in base.task_vectors(base_leaf, finetuned)])


def merge_linear(path, base_leaf, finetuned, stats, rng, drop_rate: float = 0.5, scaling: float = 0.5):
  del path, stats
  return np.asarray(base_leaf, np.float64) + scaling * sparsified(base_leaf, finetuned, rng, drop_rate).sum(0)


def merge_ties(path, base_leaf, finetuned, stats, rng, drop_rate: float = 0.5, scaling: float = 1.0, majority=None):
  del path, stats
  return ties.combine(base_leaf, sparsified(base_leaf, finetuned, rng, drop_rate), scaling, majority)


def prepare_ties(path, base_leaf, finetuned, seed, parts, drop_rate: float = 0.5, scaling: float = 1.0) -> dict:
  """The whole tensor's majority sign over its row blocks (the same draws merge_ties makes)."""
  del scaling
  if len(parts) == 1:
    return {}
  sums = [np.sign(sparsified(base_leaf[part], [f[part] for f in finetuned],
                             base.block_rng(seed, path, i, len(parts)), drop_rate).sum(0)).sum()
          for i, part in enumerate(parts)]
  return {"majority": ties.majority_sign(sums)}


LINEAR = base.register(base.Method("dare_linear", merge_linear,
                                   grid={"drop_rate": (0.3, 0.6), "scaling": (0.3, 0.5, 1.0)}))
TIES = base.register(base.Method("dare_ties", merge_ties, grid={"drop_rate": (0.3, 0.6), "scaling": (0.6, 1.0)},
                                 prepare=prepare_ties))
