"""TIES-merging (Yadav et al. 2023): trim, elect sign, disjoint mean, scale.

  1. trim: each task vector tau_i keeps its top-`density` fraction of entries by magnitude (the rest -> 0);
  2. elect: gamma = sign(sum_i trim(tau_i)) per entry (the sign with the larger total mass); an entry whose
     mass is exactly 0 takes the sign of the whole tensor's elected signs (the released code's majority sign);
  3. disjoint mean: tau = mean of the trimmed entries that agree with gamma (zeros and dissenters excluded);
  4. theta = theta_0 + lambda * tau.
Trimming is per tensor (leaf by leaf, as mergekit and PEFT's merge_utils), not over the whole flattened
model as in the released code; it keeps round(density * size) entries (at least 1), ties at the threshold
kept. The released code keeps one entry more (its kthvalue index is off by one)."""

from __future__ import annotations

import numpy as np

from mtl_jax.merge import base


def trim(tau: np.ndarray, density: float) -> np.ndarray:
  """tau with all but its round(density * size) largest-magnitude entries set to 0."""
  if not 0 < density <= 1:
    raise ValueError(f"TIES density must be in (0, 1], got {density!r}; e.g. 0.2 keeps the top 20%")
  if density == 1:
    return tau
  flat = np.abs(tau).ravel()
  keep = max(1, int(round(density * flat.size)))
  threshold = np.partition(flat, flat.size - keep)[flat.size - keep]
  return np.where(np.abs(tau) >= threshold, tau, 0.0)


def elect_sign(taus: np.ndarray) -> np.ndarray:
  """[N, ...] -> the elected sign per entry (+1 / -1)."""
  gamma = np.sign(taus.sum(0))
  majority = 1.0 if gamma.sum() >= 0 else -1.0
  return np.where(gamma == 0, majority, gamma)


def disjoint_mean(taus: np.ndarray, gamma: np.ndarray) -> np.ndarray:
  agree = (np.sign(taus) == gamma) & (taus != 0)
  count = agree.sum(0)
  return np.where(agree, taus, 0.0).sum(0) / np.maximum(count, 1)


def combine(base_leaf, taus: np.ndarray, scaling: float) -> np.ndarray:
  """Steps 2-4 on already sparsified task vectors (DARE-TIES uses this after its random drop)."""
  return np.asarray(base_leaf, np.float64) + scaling * disjoint_mean(taus, elect_sign(taus))


def merge_leaf(path, base_leaf, finetuned, stats, rng, density: float = 0.2, scaling: float = 1.0):
  del path, stats, rng
  taus = np.stack([trim(t, density) for t in base.task_vectors(base_leaf, finetuned)])
  return combine(base_leaf, taus, scaling)


METHOD = base.register(base.Method("ties", merge_leaf, grid={"density": (0.1, 0.2), "scaling": (0.6, 1.0)}))
