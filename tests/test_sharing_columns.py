"""Sluice and cross-stitch against independent computations: a numpy mixing step and
beta layer mix, and alpha = identity reducing to T independent columns."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl_jax import sharing
from mtl_jax.models.encoder import EncoderConfig, TransformerLayer
from mtl_jax.sharing import columns

CFG = EncoderConfig(d_model=16, num_heads=2, mlp_dim=32, num_layers=2, max_len=8)
T, B, L = 3, 7, 5


def inputs(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(B, L, CFG.d_model)).astype(np.float32)
  mask = np.ones((B, L), np.int32)
  mask[1, 3:] = 0  # some padding
  mask[4, 1:] = 0
  task_id = np.array([0, 1, 2, 2, 0, 1, 0], np.int32)
  return jnp.asarray(x), jnp.asarray(mask), jnp.asarray(task_id)


def init(strategy, seed=0):
  x, mask, task_id = inputs(seed)
  params = nn.meta.unbox(strategy.init(jax.random.key(seed), x, mask, task_id)["params"])
  return jax.tree.map(np.asarray, params)


def np_mix(alpha, h, m):
  """The mixing step written out with loops: out[t, m-th slice] = sum_{s,n} alpha[t,m,s,n] h[s, n-th slice]."""
  t_, b, l, d = h.shape
  a = alpha.reshape(t_, m, t_, m)
  w = d // m
  out = np.zeros_like(h)
  for t in range(t_):
    for i in range(m):
      for s in range(t_):
        for n in range(m):
          out[t, ..., i * w:(i + 1) * w] += a[t, i, s, n] * h[s, ..., n * w:(n + 1) * w]
  return out


def np_layer_norm(z, scale, bias, eps=1e-6):
  mu = z.mean(-1, keepdims=True)
  var = ((z - mu) ** 2).mean(-1, keepdims=True)
  return (z - mu) / np.sqrt(var + eps) * scale + bias


@pytest.mark.parametrize("m", [1, 2, 4])
def test_mix_subspaces_matches_numpy(m):
  rng = np.random.default_rng(m)
  h = rng.normal(size=(T, B, L, CFG.d_model)).astype(np.float32)
  alpha = rng.normal(size=(T * m, T * m)).astype(np.float32)
  np.testing.assert_allclose(columns.mix_subspaces(jnp.asarray(alpha), jnp.asarray(h), m), np_mix(alpha, h, m),
                             rtol=1e-5, atol=1e-5)


def test_sluice_module_mixing_and_beta_match_numpy():
  strategy = sharing.build("sluice", CFG, T)
  params = init(strategy)
  rng = np.random.default_rng(1)
  inner = params["sluice"]
  for k in range(CFG.num_layers):
    inner[f"alpha_{k}"] = rng.normal(size=inner[f"alpha_{k}"].shape).astype(np.float32)
  inner["beta"] = rng.normal(size=inner["beta"].shape).astype(np.float32)
  x, mask, task_id = inputs()
  _, state = strategy.apply({"params": params}, x, mask, task_id, mutable=["intermediates"])
  got = jax.tree.map(np.asarray, state["intermediates"]["sluice"])
  mixed = []
  for k in range(CFG.num_layers):
    expect = np_mix(inner[f"alpha_{k}"], got[f"columns_{k}"][0], 2)
    np.testing.assert_allclose(got[f"mixed_{k}"][0], expect, rtol=1e-4, atol=1e-5)
    mixed.append(expect)
  layer_mix = np.stack([sum(inner["beta"][t, k] * mixed[k][t, b] for k in range(CFG.num_layers))
                        for b, t in enumerate(np.asarray(task_id))])
  np.testing.assert_allclose(got["layer_mix"][0], layer_mix, rtol=1e-4, atol=1e-5)


def independent_columns(params, x, mask, task_id, beta=None):
  """Each column run alone with its own slice of the stacked params; example b reads column task_id[b]."""
  out = np.zeros(x.shape, np.float32)
  for t in range(T):
    h, layers = x, []
    for k in range(CFG.num_layers):
      p_t = jax.tree.map(lambda w: w[t], params[f"layer_{k}"])
      h = TransformerLayer(CFG).apply({"params": p_t}, h, mask)
      layers.append(np.asarray(h))
    z = layers[-1] if beta is None else sum(beta[t, k] * layers[k] for k in range(CFG.num_layers))
    z = np_layer_norm(z, params["ln_final"]["scale"][t], params["ln_final"]["bias"][t])
    out[np.asarray(task_id) == t] = z[np.asarray(task_id) == t]
  return out


@pytest.mark.parametrize("name", ["sluice", "cross_stitch"])
def test_identity_alpha_is_independent_columns(name):
  strategy = sharing.build(name, CFG, T)
  params = init(strategy)
  inner = params[name]
  rng = np.random.default_rng(2)
  for k in range(CFG.num_layers):
    shape = inner[f"alpha_{k}"].shape
    inner[f"alpha_{k}"] = np.eye(int(np.sqrt(np.prod(shape))), dtype=np.float32).reshape(shape)
  inner["ln_final"]["scale"] = rng.normal(size=inner["ln_final"]["scale"].shape).astype(np.float32)
  inner["ln_final"]["bias"] = rng.normal(size=inner["ln_final"]["bias"].shape).astype(np.float32)
  beta = None
  if name == "sluice":
    beta = inner["beta"] = rng.normal(size=inner["beta"].shape).astype(np.float32)
  x, mask, task_id = inputs()
  got = strategy.apply({"params": params}, x, mask, task_id)
  np.testing.assert_allclose(got, independent_columns(inner, x, mask, task_id, beta), rtol=1e-4, atol=1e-4)


def test_mixing_changes_output():
  # The non-identity init really mixes: the output differs from independent columns.
  strategy = sharing.build("cross_stitch", CFG, T)
  params = init(strategy)
  x, mask, task_id = inputs()
  got = np.asarray(strategy.apply({"params": params}, x, mask, task_id))
  assert np.abs(got - independent_columns(params["cross_stitch"], x, mask, task_id)).max() > 1e-3


def test_init_values():
  a = columns.alpha_init("imbalanced", 0.9)(None, (3, 2, 3, 2)).reshape(6, 6)
  np.testing.assert_allclose(np.diag(a), 0.9)
  np.testing.assert_allclose(a[0, 1:], 0.1 / 5, rtol=1e-6)
  np.testing.assert_allclose(a.sum(1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(columns.alpha_init("balanced")(None, (6, 6)), np.full((6, 6), 1 / 6), rtol=1e-6)
  beta = np.asarray(columns.beta_init(0.9)(None, (3, 4)))
  np.testing.assert_allclose(beta, np.tile([0.1 / 3, 0.1 / 3, 0.1 / 3, 0.9], (3, 1)), rtol=1e-6)
  np.testing.assert_allclose(columns.beta_init(0.9)(None, (2, 1)), [[1.0], [1.0]])
  params = init(sharing.build("sluice", CFG, T))["sluice"]
  assert params["alpha_0"].shape == (T, 2, T, 2) and params["beta"].shape == (T, CFG.num_layers)
  assert init(sharing.build("cross_stitch", CFG, T))["cross_stitch"]["alpha_1"].shape == (T, T)


def test_factory_validation():
  with pytest.raises(ValueError, match="alpha_init"):
    sharing.sluice.sluice(CFG, T, alpha_init="random")
  with pytest.raises(ValueError, match="num_subspaces"):
    sharing.sluice.sluice(CFG, T, num_subspaces=3)
  with pytest.raises(ValueError, match="alpha_diagonal"):
    sharing.cross_stitch.cross_stitch(CFG, T, alpha_diagonal=1.5)
