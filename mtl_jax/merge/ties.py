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


def threshold(tau: np.ndarray, density: float) -> float:
  """The magnitude of tau's round(density * size)-th largest entry (0 keeps everything)."""
  if not 0 < density <= 1:
    raise ValueError(f"TIES density must be in (0, 1], got {density!r}; e.g. 0.2 keeps the top 20%")
  if density == 1:
    return 0.0
  flat = np.abs(tau).ravel()
  keep = max(1, int(round(density * flat.size)))
  return float(np.partition(flat, flat.size - keep)[flat.size - keep])


def _cut_in_place(magnitude: np.ndarray, density: float) -> float:
  if not 0 < density <= 1:
    raise ValueError(f"TIES density must be in (0, 1], got {density!r}; e.g. 0.2 keeps the top 20%")
  if density == 1:
    return 0.0
  keep = max(1, int(round(density * magnitude.size)))
  magnitude.partition(magnitude.size - keep)
  return float(magnitude[magnitude.size - keep])


def trim(tau: np.ndarray, density: float, cut: float | None = None) -> np.ndarray:
  """tau with all but its round(density * size) largest-magnitude entries set to 0 (`cut`: that magnitude,
  computed on the whole tensor when tau is one row block of it)."""
  cut = threshold(tau, density) if cut is None else cut
  return np.where(np.abs(tau) >= cut, tau, 0.0)


def elect_sign(taus: np.ndarray, majority: float | None = None) -> np.ndarray:
  """[N, ...] -> the elected sign per entry (+1 / -1); `majority`: the whole tensor's, for a row block."""
  gamma = np.sign(taus.sum(0))
  if majority is None:
    majority = 1.0 if gamma.sum() >= 0 else -1.0
  return np.where(gamma == 0, majority, gamma)


def disjoint_mean(taus: np.ndarray, gamma: np.ndarray) -> np.ndarray:
  agree = (np.sign(taus) == gamma) & (taus != 0)
  count = agree.sum(0)
  return np.where(agree, taus, 0.0).sum(0) / np.maximum(count, 1)


def combine(base_leaf, taus: np.ndarray, scaling: float, majority: float | None = None) -> np.ndarray:
  """Steps 2-4 on already sparsified task vectors (DARE-TIES uses this after its random drop)."""
  return np.asarray(base_leaf, np.float64) + scaling * disjoint_mean(taus, elect_sign(taus, majority))


def majority_sign(gamma_sums) -> float:
  return 1.0 if sum(gamma_sums) >= 0 else -1.0


def prepare(path, base_leaf, finetuned, seed, parts, density: float = 0.2, scaling: float = 1.0) -> dict:
  """The whole tensor's trim magnitudes (one task vector at a time, float32) and majority sign, when it is
  merged in several row blocks."""
  del path, seed, scaling
  if len(parts) == 1:
    return {}
  cuts = []
  for f in finetuned:  # |tau| in float64 as the blocks compute it, filled block by block, sorted in place
    magnitude = np.empty(np.shape(f), np.float64)
    for part in parts:
      magnitude[part] = np.abs(base.task_vectors(base_leaf[part], [f[part]])[0])
    cuts.append(_cut_in_place(magnitude.ravel(), density))
    del magnitude
  sums = []
  for part in parts:
    taus = base.task_vectors(base_leaf[part], [f[part] for f in finetuned])
    sums.append(np.sign(np.stack([trim(t, density, c) for t, c in zip(taus, cuts)]).sum(0)).sum())
  return {"cuts": cuts, "majority": majority_sign(sums)}


def merge_leaf(path, base_leaf, finetuned, stats, rng, density: float = 0.2, scaling: float = 1.0, cuts=None,
               majority=None):
  del path, stats, rng
  cuts = cuts or [None] * len(finetuned)
  taus = np.stack([trim(t, density, c) for t, c in zip(base.task_vectors(base_leaf, finetuned), cuts)])
  return combine(base_leaf, taus, scaling, majority)


METHOD = base.register(base.Method("ties", merge_leaf, grid={"density": (0.1, 0.2), "scaling": (0.6, 1.0)},
                                   prepare=prepare))
