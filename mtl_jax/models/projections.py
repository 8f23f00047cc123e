"""The attention's head projections with the LoRA seam, written once for every layout.

Why one module: the BERT-family peft attention (sharing/peft_layer.py) and the T5, DeBERTa-v2 and
ModernBERT attentions all project x [.., D] -> [.., H, K] through `{name}_kernel` [D, H, K]
(+ `{name}_bias` [H, K]) and back through `out_kernel` [H, K, D] (+ `out_bias` [D]), each adding
`hooks.lora(name, input)`. Those names and logical axes are the contract of the checkpoint reader,
the exporter and lora_merge, and the delta's reshape / cast is easy to get subtly different, so
they live here. Call these inside the attention module's compact body (they create its params).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mtl_jax.models.encoder import _DENSE_INIT, param_init


def head_kernels(module: nn.Module, name: str, bias: bool):
  """(`{name}_kernel` [D, H, K], `{name}_bias` [H, K] or None): creates the module's params."""
  cfg = module.config
  shape_DHK = (cfg.d_model, cfg.num_heads, cfg.head_dim)
  w_DHK = module.param(f"{name}_kernel", param_init(_DENSE_INIT, ("embed", "heads", "kv")), shape_DHK,
                       cfg.params_dtype)
  b_HK = (module.param(f"{name}_bias", param_init(nn.initializers.zeros, ("heads", "kv")), shape_DHK[1:],
                       cfg.params_dtype) if bias else None)
  return w_DHK, b_HK


def project_heads(x, kernels, hooks, name: str):
  """x [.., D] (already in the compute dtype) -> [.., H, K] through `kernels` (head_kernels), plus
  hooks.lora(name, x) reshaped to heads."""
  w_DHK, b_HK = kernels
  y = jnp.einsum("...d,dhk->...hk", x, w_DHK.astype(x.dtype))
  if b_HK is not None:
    y = y + b_HK.astype(x.dtype)
  delta = hooks.lora(name, x)
  return y if delta is None else y + delta.reshape(y.shape).astype(x.dtype)


def in_projection(module: nn.Module, name: str, x, hooks, bias: bool):
  """The query / key / value projection `name` of x [B, L, D] -> [B, L, H, K] with its LoRA seam."""
  return project_heads(x, head_kernels(module, name, bias), hooks, name)


def out_projection(module: nn.Module, out_BLHK, hooks, bias: bool):
  """[B, L, H, K] -> [B, L, D] through `out_kernel` (+ `out_bias`), plus hooks.lora('out', heads flattened)."""
  cfg = module.config
  dt, pdt = out_BLHK.dtype, cfg.params_dtype
  h, k = cfg.num_heads, cfg.head_dim
  w_HKD = module.param("out_kernel", param_init(_DENSE_INIT, ("heads", "kv", "embed")), (h, k, cfg.d_model), pdt)
  y = jnp.einsum("blhk,hkd->bld", out_BLHK, w_HKD.astype(dt))
  if bias:
    b_D = module.param("out_bias", param_init(nn.initializers.zeros, ("embed",)), (cfg.d_model,), pdt)
    y = y + b_D.astype(dt)
  delta = hooks.lora("out", out_BLHK.reshape(out_BLHK.shape[:2] + (h * k,)))
  return y if delta is None else y + delta.astype(dt)


def dense(cfg, name: str, features: int, axes: tuple, x, hooks, bias: bool):
  """A feed-forward projection nn.Dense(name) (kernel axes `axes`, bias axes axes[1:]) of x plus
  hooks.lora(name, x); call inside the MLP module's compact body."""
  y = nn.Dense(features, name=name, use_bias=bias, dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype,
               kernel_init=param_init(_DENSE_INIT, axes), bias_init=param_init(nn.initializers.zeros, axes[1:]))(x)
  delta = hooks.lora(name, x)
  return y if delta is None else y + delta.astype(y.dtype)
