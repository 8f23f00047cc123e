"""The sown penalties and their gradients equal jax.grad of the formulas written out here."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl_jax import sharing
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.sharing.soft import SoftSharing

CFG = EncoderConfig(d_model=16, num_heads=2, mlp_dim=32, num_layers=2, max_len=8)
T, B, L = 3, 6, 5


def inputs():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(B, L, CFG.d_model)).astype(np.float32))
  mask = np.ones((B, L), np.int32)
  mask[0, 2:] = 0
  mask[3, 4:] = 0
  return x, jnp.asarray(mask), jnp.asarray([0, 1, 2, 0, 1, 2], jnp.int32)


def sown_penalty(strategy, params):
  x, mask, task_id = inputs()
  _, state = strategy.apply({"params": params}, x, mask, task_id, mutable=["penalties"])
  return sum(jnp.sum(p) for p in jax.tree.leaves(state["penalties"]))


def assert_same_value_and_grad(f, g, params):
  (fv, fg), (gv, gg) = jax.jit(jax.value_and_grad(f))(params), jax.jit(jax.value_and_grad(g))(params)
  np.testing.assert_allclose(fv, gv, rtol=1e-5)
  assert float(gv) > 0
  scale = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(gg))
  assert scale > 0
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale), fg, gg)


@pytest.mark.parametrize("kind", ["mean", "pairwise"])
def test_soft_penalty_and_gradient(kind):
  weight = 0.37
  strategy = SoftSharing(CFG, T, weight=weight, penalty=kind, same_init=False)
  x, mask, task_id = inputs()
  params = nn.meta.unbox(strategy.init(jax.random.key(0), x, mask, task_id)["params"])

  def direct(params):
    total = 0.0
    for w in jax.tree.leaves(params["tied"]):
      if kind == "mean":
        mean = sum(w[t] for t in range(T)) / T
        total += sum(jnp.sum((w[t] - mean) ** 2) for t in range(T))
      else:
        total += sum(jnp.sum((w[s] - w[t]) ** 2) for s in range(T) for t in range(s + 1, T))
    return weight * total

  assert_same_value_and_grad(lambda p: sown_penalty(strategy, p), direct, params)


def test_soft_penalty_is_zero_for_equal_towers_and_skips_shared():
  strategy = SoftSharing(CFG, T, weight=1.0, same_init=True)
  x, mask, task_id = inputs()
  params = nn.meta.unbox(strategy.init(jax.random.key(0), x, mask, task_id)["params"])
  assert float(sown_penalty(strategy, params)) < 1e-10
  grads = jax.grad(lambda p: sown_penalty(strategy, p))(params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["shared"]))


@pytest.mark.parametrize("normalize", [True, False])
def test_sluice_orthogonality_penalty_and_gradient(normalize):
  weight = 0.01
  strategy = sharing.sluice.sluice(CFG, T, orthogonality_weight=weight, normalize_orthogonality=normalize)
  x, mask, task_id = inputs()
  params = nn.meta.unbox(strategy.init(jax.random.key(0), x, mask, task_id)["params"])
  real = np.asarray(mask).astype(bool)

  def direct(params):
    """weight * sum_k sum_t ||G1^T G2||_F^2, G = column t's layer-k output at real tokens, split in two."""
    _, state = strategy.apply({"params": params}, x, mask, task_id, mutable=["intermediates"])
    total = 0.0
    for k in range(CFG.num_layers):
      h = state["intermediates"]["sluice"][f"columns_{k}"][0]
      for t in range(T):
        g = h[t][real]  # [real tokens, D]
        g1, g2 = g[:, :CFG.d_model // 2], g[:, CFG.d_model // 2:]
        total += jnp.sum((g1.T @ g2) ** 2)
    return weight * total / (real.sum() ** 2 if normalize else 1.0)

  assert_same_value_and_grad(lambda p: sown_penalty(strategy, p), direct, params)


def test_no_penalty_for_cross_stitch_and_mmoe():
  x, mask, task_id = inputs()
  for name in ("cross_stitch", "mmoe", "hard"):
    strategy = sharing.build(name, CFG, T)
    params = nn.meta.unbox(strategy.init(jax.random.key(0), x, mask, task_id)["params"])
    _, state = strategy.apply({"params": params}, x, mask, task_id, mutable=["penalties"])
    assert not jax.tree.leaves(state.get("penalties", {})), name
