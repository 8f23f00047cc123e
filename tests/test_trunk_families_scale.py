"""bf16 and remat with the trunk layouts chosen by model_type (t5, deberta-v2, modernbert, electra):
one train step under EncoderConfig.dtype='bfloat16' gives a finite loss close to float32's, remat
gives float32's loss and gradients, and scan_layers is refused in one line naming the model_type.

Configs: trunk_families.TOY_CONFIGS (as the checkpoint reader builds them, toy size, no transformers)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import trunk_families as tf_
from helpers import fixed_batch, tiny_steps

CONFIGS = tf_.TOY_CONFIGS
# the default suite runs deberta-v2 (the most layout of its own); the others under the matrix marker
TYPES = [t if t == "deberta-v2" else pytest.param(t, marks=pytest.mark.matrix) for t in CONFIGS]


def loss_and_grads(config, params=None):
  steps = tiny_steps("hard", config=config)
  params = steps.init_state().params if params is None else params
  batch = jax.tree.map(jnp.asarray, fixed_batch())
  with jax.set_mesh(steps.mesh):
    loss, _, grads, _ = jax.jit(steps._loss_and_grads)(params, batch, jax.random.key(3), {},
                                                        jnp.zeros((), jnp.int32))
  return params, jax.device_get((loss, grads))


@pytest.mark.parametrize("model_type", TYPES)
def test_bf16_and_remat_steps(model_type):
  cfg = CONFIGS[model_type]
  params, (loss32, grads32) = loss_and_grads(cfg)
  _, (loss16, grads16) = loss_and_grads(dataclasses.replace(cfg, dtype="bfloat16"), params)
  _, (loss_remat, grads_remat) = loss_and_grads(dataclasses.replace(cfg, remat_policy="full"), params)
  print(f"{model_type}: loss f32 {float(loss32):.6f} bf16 {float(loss16):.6f} remat {float(loss_remat):.6f}")
  assert np.isfinite(loss16) and abs(float(loss16) - float(loss32)) <= 2e-2 * abs(float(loss32))  # bf16's 8 bits
  flat16, flat32 = jax.tree.leaves(grads16), jax.tree.leaves(grads32)
  assert all(np.isfinite(g).all() for g in flat16)
  cos = float(sum(np.vdot(a, b) for a, b in zip(flat16, flat32))
              / np.sqrt(sum(np.vdot(a, a) for a in flat16) * sum(np.vdot(b, b) for b in flat32)))
  assert cos > 0.99, cos  # bf16 gradients point where float32's do
  np.testing.assert_allclose(loss_remat, loss32, rtol=1e-6)
  scale = max(float(np.abs(g).max()) for g in flat32)
  for g, g0 in zip(jax.tree.leaves(grads_remat), flat32):  # recomputation may reorder float sums, nothing more
    np.testing.assert_allclose(g, g0, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("model_type", ["t5", "deberta-v2", "modernbert"])
def test_scan_layers_is_refused_in_one_line_naming_the_model_type(model_type):
  """The line the binary prints (train.one_line: gin's 'In call to configurable' context dropped)."""
  from mtl_jax import train
  with pytest.raises(ValueError) as e:
    dataclasses.replace(CONFIGS[model_type], scan_layers=True)
  assert train.one_line(e.value) == (f"EncoderConfig.scan_layers=True is not supported for model_type "
                                     f"'{model_type}'; set it to False")

