"""MMoE against an independent computation: each expert run alone with its own param
slice, a per-sequence softmax gate from the masked mean of the embedded input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtl_jax import sharing
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.sharing.mmoe import MMoE
from mtl_jax.sharing.towers import Tower

CFG = EncoderConfig(d_model=16, num_heads=2, mlp_dim=32, num_layers=2, max_len=8)
T, E, B, L = 3, 4, 6, 5


def test_mmoe_matches_independent_experts():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(B, L, CFG.d_model)).astype(np.float32)
  mask = np.ones((B, L), np.int32)
  mask[1, 2:] = 0
  task_id = np.array([0, 1, 2, 1, 0, 2], np.int32)
  module = MMoE(CFG, T, E)
  params = nn.meta.unbox(module.init(jax.random.key(0), x, mask, task_id)["params"])
  params["gate_bias"] = jnp.asarray(rng.normal(size=(T, E)).astype(np.float32))
  params["gate_kernel"] = params["gate_kernel"] * 30.0  # make the input-dependent part matter
  got = np.asarray(module.apply({"params": params}, x, mask, task_id))

  experts = [np.asarray(Tower(CFG).apply({"params": jax.tree.map(lambda w: w[e], params["experts"])}, x, mask))
             for e in range(E)]
  kernel, bias = np.asarray(params["gate_kernel"]), np.asarray(params["gate_bias"])
  gates = []
  for b in range(B):
    pooled = x[b][mask[b] == 1].mean(0)
    logits = pooled @ kernel[task_id[b]] + bias[task_id[b]]
    gate = np.exp(logits - logits.max())
    gate /= gate.sum()
    gates.append(gate)
    want = sum(gate[e] * experts[e][b] for e in range(E))
    np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-5)
  assert np.ptp(np.stack(gates), axis=0).max() > 0.05  # the gates really differ between examples


def test_mmoe_factory_and_shapes():
  strategy = sharing.build("mmoe", CFG, T)
  x = jnp.zeros((B, L, CFG.d_model))
  params = nn.meta.unbox(strategy.init(jax.random.key(0), x, jnp.ones((B, L)), jnp.zeros(B, jnp.int32)))["params"]
  assert params["mmoe"]["gate_kernel"].shape == (T, CFG.d_model, 4)
  assert params["mmoe"]["experts"]["layers"]["layer_0"]["mlp"]["wi"]["kernel"].shape == (4, 16, 32)
