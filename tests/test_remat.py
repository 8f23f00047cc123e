"""Per-layer rematerialisation (EncoderConfig.remat_policy) in every strategy: the same
parameters, loss and gradients as without it, and a checkpointed body per layer in the
traced step (hard trunk, soft towers, sluice / cross-stitch columns, MMoE experts)."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import TINY, fixed_batch, tiny_steps

CFG = dataclasses.replace(TINY, num_layers=2)


def loss_and_grads(steps, params, batch):
  with jax.set_mesh(steps.mesh):
    fn = jax.jit(steps._loss_and_grads)
    loss, _, grads, _ = fn(params, jax.tree.map(jnp.asarray, batch), jax.random.key(3), {}, jnp.zeros((), jnp.int32))
  return jax.device_get((loss, grads))


def remat_count(steps, params, batch):
  """Checkpointed sub-computations in the traced train loss (jax's 'checkpoint' / 'remat' primitive)."""
  jaxpr = jax.make_jaxpr(lambda p: steps._loss_and_grads(p, batch, jax.random.key(3), {}, jnp.zeros((), jnp.int32)))
  text = str(jaxpr(params))
  return len(re.findall(r"= (?:checkpoint|remat\d*)\[", text))


@pytest.mark.parametrize("sharing", ["hard", "soft", "sluice", "mmoe"])
def test_remat_gives_the_same_loss_and_gradients(sharing):
  batch = fixed_batch()
  plain = tiny_steps(sharing, config=CFG)
  params = plain.init_state().params
  loss0, grads0 = loss_and_grads(plain, params, batch)
  assert remat_count(plain, params, batch) == 0
  for policy in ("full", "dots_saveable") if sharing == "hard" else ("full",):  # (compile time)
    steps = tiny_steps(sharing, config=dataclasses.replace(CFG, remat_policy=policy))
    assert jax.tree.structure(steps.abstract_state.params) == jax.tree.structure(params)  # same param tree
    assert remat_count(steps, params, batch) >= CFG.num_layers  # one checkpointed body per layer
    loss, grads = loss_and_grads(steps, params, batch)
    np.testing.assert_allclose(loss, loss0, rtol=1e-6)
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads0))
    for g, g0 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads0)):  # recomputation reorders float sums
      np.testing.assert_allclose(g, g0, rtol=1e-5, atol=1e-6 * scale)


def test_unknown_remat_policy_is_one_line():
  with pytest.raises(ValueError, match=r"EncoderConfig.remat_policy must be one of \('none', 'full'"):
    dataclasses.replace(CFG, remat_policy="everything")


def test_a_resume_may_turn_remat_on_but_not_change_precision():
  """remat only trades memory for recompute (same values, tested above): turning it on after an OOM must
  not refuse the resume; a dtype change still does, naming the field."""
  from mtl_jax.run import run_spec
  spec = lambda **kw: {"sharing": "hard", "tasks": ["a"], "num_classes": [2], "param_groups": {},
                       "train_example_limit": {"limit": None, "subset_seed": None}, "param_shapes": {},
                       "encoder": dataclasses.asdict(dataclasses.replace(CFG, **kw))}
  assert run_spec.differences(spec(), spec(remat_policy="full")) == []
  assert run_spec.differences(spec(), spec(dtype="bfloat16")) == ["EncoderConfig.dtype 'float32' -> 'bfloat16'"]
