"""Mixed precision (EncoderConfig.dtype='bfloat16'): bf16 matmuls, float32 parameters,
softmax / LayerNorm statistics, heads and losses; a short quickstart-style run ends
within a small tolerance of the float32 run."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import TINY, fixed_batch, tiny_steps

CFG = dataclasses.replace(TINY, num_layers=2)
BF16 = dataclasses.replace(CFG, dtype="bfloat16")


def forward_jaxpr(steps, params, batch):
  return str(jax.make_jaxpr(lambda p: steps.model.apply({"params": p}, jax.tree.map(jnp.asarray, batch)))(params))


def outputs_of(text, primitive):
  """dtypes of every `primitive` equation's outputs in a jaxpr's text ('f32', 'bf16', ...)."""
  return re.findall(r"(\w+)\[[\d,]*\] = " + primitive + r"\b", text)


def test_bf16_matmuls_with_float32_params_softmax_norms_and_heads():
  batch = fixed_batch()
  steps = tiny_steps("hard", config=BF16)
  params = steps.init_state().params
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}  # param_dtype
  text = forward_jaxpr(steps, params, batch)
  dots = outputs_of(text, "dot_general")
  assert dots.count("bf16") >= 6 * CFG.num_layers  # q, k, v, scores, probs @ v, out, wi, wo per layer
  assert set(outputs_of(text, "exp")) == {"f32"}  # softmax statistics
  assert set(outputs_of(text, "rsqrt")) == {"f32"}  # LayerNorm statistics
  out = steps.model.apply({"params": params}, jax.tree.map(jnp.asarray, batch))
  assert out.pooled_logits.dtype == jnp.float32 and out.token_logits.dtype == jnp.float32
  plain = tiny_steps("hard", config=CFG)
  assert "bf16" not in forward_jaxpr(plain, params, batch)  # the default stays float32 throughout


def short_run(config, num_steps=40):
  steps = tiny_steps("hard", config=config, lr=3e-3)
  state = steps.init_state()
  batches = [fixed_batch(seed=s) for s in range(4)]
  losses = []
  for i in range(num_steps):
    state, metrics = steps.run_train_step(state, batches[i % 4])
    losses.append(float(metrics["loss"]))
  return np.array(losses), jax.device_get(state.params)


def test_bf16_short_run_ends_within_tolerance_of_float32():
  f32, params32 = short_run(CFG)
  bf16, params16 = short_run(BF16)
  assert f32[-4:].mean() < 0.7 * f32[:4].mean()  # it learns
  np.testing.assert_allclose(bf16[:4], f32[:4], rtol=2e-2)  # the same start
  assert abs(bf16[-4:].mean() - f32[-4:].mean()) < 0.05 * f32[-4:].mean()  # and the same end, within 5%
  drift = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params16), jax.tree.leaves(params32)))
  assert 0 < drift < 0.05  # bf16 changes the trajectory a little, never much


def test_unknown_dtype_is_one_line():
  with pytest.raises(ValueError, match=r"EncoderConfig.dtype must be one of \('float32', 'bfloat16'\), got 'fp8'"):
    dataclasses.replace(CFG, dtype="fp8")
