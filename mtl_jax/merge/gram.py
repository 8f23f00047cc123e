"""Gram matrices of every linear layer's inputs (RegMean's statistic), read by a flax method interceptor.

G = (1/T) sum over the T real tokens of x x^T, for each kernel: nn.Dense layers (MLP wi / wo, an embedding
projection) see their call's input; attention's query / key / value kernels see the attention input; its
output kernel sees the heads' context, recomputed here from the same params (SelfAttention multiplies it by
`out_kernel` inside one method, where no interceptor reaches; tests/test_merge_regmean.py checks that
context @ out_kernel + out_bias equals the module's output). No model code changes; padding tokens and
padding rows (weight 0) count for nothing. Heads are not merged, so their inputs are not recorded.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtl_jax.models.encoder import SelfAttention


def attention_context(module: SelfAttention, x, mask):
  """[B, L, H, K]: the heads' context SelfAttention multiplies by out_kernel (its own arithmetic, float32)."""
  p = module.variables["params"]
  x = x.astype(jnp.float32)
  proj = lambda n: jnp.einsum("bld,dhk->blhk", x, p[f"{n}_kernel"]) + p[f"{n}_bias"]
  q, k, v = proj("query"), proj("key"), proj("value")
  logits = jnp.einsum("bqhk,bshk->bhqs", q, k) / jnp.sqrt(module.config.head_dim).astype(jnp.float32)
  logits = jnp.where(mask[:, None, None, :].astype(bool), logits, jnp.finfo(jnp.float32).min)
  return jnp.einsum("bhqs,bshk->bqhk", nn.softmax(logits, axis=-1), v)


def _gram(x, token_weight):
  """sum_t w_t x_t x_t^T over tokens ([B, L, ...] or [B, ...] rows), inputs flattened to d_in."""
  rows = x.reshape(token_weight.size, -1).astype(jnp.float32)
  return jnp.einsum("tm,tn,t->mn", rows, rows, token_weight.reshape(-1))


def batch_grams(model, params, batch) -> dict:
  """{kernel path: sum over this batch's real tokens of x x^T}, and '__tokens__': their count."""
  tokens = batch["input_mask"].astype(jnp.float32) * batch["weight"].astype(jnp.float32)[:, None]  # [B, L]
  out = {}

  def weight_for(x):
    return tokens if x.ndim >= 3 and x.shape[:2] == tokens.shape else batch["weight"].astype(jnp.float32)

  def record(path, x):
    out[path] = out.get(path, 0.0) + _gram(x, weight_for(x))

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name == "__call__":
      prefix = "/".join(module.scope.path)
      if isinstance(module, nn.Dense):
        record(f"{prefix}/kernel", args[0])
      elif isinstance(module, SelfAttention):
        y = next_fun(*args, **kwargs)  # params exist from here on
        x, mask = args[0], args[1]
        for name in ("query", "key", "value"):
          record(f"{prefix}/{name}_kernel", x)
        record(f"{prefix}/out_kernel", attention_context(module, x, mask))
        return y
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    model.apply({"params": params}, batch, deterministic=True)
  out["__tokens__"] = tokens.sum()
  return out


def statistics(model, params, batches: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """{kernel path: mean over the batches' real tokens of x x^T} of one model (its params, its task's data)."""
  step = jax.jit(lambda p, b: batch_grams(model, p, b))
  total = None
  for batch in batches:
    sums = step(params, {k: jnp.asarray(v) for k, v in batch.items()})
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
  if total is None:
    raise ValueError("RegMean saw no examples: the task's training split is empty")
  total = jax.device_get(total)
  n = float(total.pop("__tokens__"))
  if n == 0:
    raise ValueError("RegMean saw no real tokens: every batch was padding")
  return {k: np.asarray(v, np.float64) / n for k, v in total.items() if not k.startswith("heads/")}
