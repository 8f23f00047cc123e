"""Adapters runs merged onto the frozen trunk (mtl_jax/merge/adapters.py), on hand-made flat params: each
adapter tensor's task slice is merged against 0 and tiled over the target's tasks, equal to numpy written
from the papers' equations (task arithmetic: lambda sum_i tau_i; TIES: trim to the top-k magnitudes, elect
the sign of the summed mass, mean of the agreeing entries, times lambda); the frozen trunk comes out as the
starting point; merging N copies returns the model; statistic methods are refused in one line."""

import numpy as np
import pytest

from mtl_jax.merge import adapters

TRUNK, DOWN, UP = "trunk/layer_0/mlp/wi/kernel", "trunk/adapter_0/mlp_down_kernel", "trunk/adapter_0/mlp_up_bias"
KEYS = [TRUNK, DOWN, UP]


def _runs(n, seed=0):
  rng = np.random.default_rng(seed)
  theta0 = rng.normal(size=(4, 3)).astype(np.float32)
  runs = [{TRUNK: theta0.copy(), DOWN: rng.normal(size=(1, 4, 2)).astype(np.float32),
           UP: rng.normal(size=(1, 4)).astype(np.float32)} for _ in range(n)]
  return {TRUNK: theta0}, runs


def _ties_reference(taus, density, lam):
  """TIES (Yadav et al. 2023) on [N, ...] task vectors, written out entry by entry."""
  trimmed = []
  for tau in taus:
    flat = tau.ravel()
    keep = max(1, int(round(density * flat.size)))
    order = np.argsort(-np.abs(flat), kind="stable")[:keep]
    out = np.zeros_like(flat)
    out[order] = flat[order]
    trimmed.append(out.reshape(tau.shape))
  trimmed = np.stack(trimmed)
  sign = np.sign(trimmed.sum(0))
  merged = np.zeros(taus.shape[1:])
  for idx in np.ndindex(*taus.shape[1:]):
    agree = [t[idx] for t in trimmed if t[idx] != 0 and np.sign(t[idx]) == sign[idx]]
    merged[idx] = np.mean(agree) if agree else 0.0
  return lam * merged


def test_task_arithmetic_and_ties_on_adapter_slices_match_numpy_and_the_trunk_stays():
  base, runs = _runs(3)
  ta = adapters.merge("task_arithmetic", base, runs, 5, KEYS, scaling=0.4)
  for path in (DOWN, UP):
    expected = 0.4 * np.sum([r[path][0].astype(np.float64) for r in runs], axis=0)
    assert ta[path].shape == (5, *runs[0][path].shape[1:])
    np.testing.assert_allclose(ta[path], np.broadcast_to(expected, ta[path].shape), rtol=1e-6)
  np.testing.assert_array_equal(ta[TRUNK], base[TRUNK])
  ties = adapters.merge("ties", base, runs, 2, KEYS, density=0.5, scaling=0.8)
  for path in (DOWN, UP):
    expected = _ties_reference(np.stack([r[path][0].astype(np.float64) for r in runs]), 0.5, 0.8)
    np.testing.assert_allclose(ties[path][0], expected, rtol=1e-6)
    np.testing.assert_array_equal(ties[path][1], ties[path][0])  # every task gets the one merged adapter
  np.testing.assert_array_equal(ties[TRUNK], base[TRUNK])


@pytest.mark.parametrize("method, hparams", [("average", {}), ("task_arithmetic", {"scaling": 1 / 3}),
                                             ("ties", {"density": 1.0, "scaling": 1.0})])
def test_merging_n_copies_returns_the_model(method, hparams):
  base, runs = _runs(1, seed=1)
  merged = adapters.merge(method, base, runs * 3, 3, KEYS, **hparams)
  for path in KEYS:
    expected = runs[0][path] if path == TRUNK else np.broadcast_to(runs[0][path], (3, *runs[0][path].shape[1:]))
    np.testing.assert_allclose(merged[path], expected, rtol=1e-6, atol=1e-7)


def test_statistic_methods_are_refused_in_one_line():
  base, runs = _runs(2)
  for method in ("fisher", "regmean"):
    with pytest.raises(ValueError, match=f"merge method '{method}' needs .* adapters runs merge their modules by "
                       "average, task_arithmetic, ties, dare_linear, dare_ties$"):
      adapters.merge(method, base, runs, 2, KEYS)
