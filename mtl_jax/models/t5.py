"""The T5 encoder (v1.0, v1.1, Flan) as a trunk layout: model_type 't5'.

What differs from the BERT layout (encoder.py), as HF's T5EncoderModel computes it:
  - RMSNorm (scale only, no mean, no bias) BEFORE each sublayer; the last layer ends with the
    encoder's final RMSNorm (`layer_{K-1}/ln_final`, HF encoder.final_layer_norm) and dropout,
    so the trunk needs no closing norm of its own (EncoderConfig.norm='post');
  - attention without biases and without the 1/sqrt(d) scale, plus a relative-position bias:
    positions bucketed (bidirectional, log-spaced beyond max_distance / 2) and looked up in ONE
    [buckets, heads] table shared by every layer. The table lives beside the layers
    (`<stack>/positions/embedding`, built by `layer_inputs`) and reaches them with the mask, as
    HF's block 0 hands its position_bias to the rest;
  - ReLU feed-forward (v1.0) or gated GELU (tanh) act(x W0) * (x W1) (v1.1 / Flan), no biases;
  - token embeddings only (no positions, no types, no scaling), then dropout.
Packed rows (mtl_jax/models/segments.py): attention is block-diagonal over the segment ids in `mask`;
the bias reads (key index - query index), which inside one contiguous segment IS the difference of
the per-segment positions, so each example gets the buckets it has alone.
Params keep the BERT layout's names where the roles agree (attention/{query,key,value,out}_kernel
[D, H, K] / [H, K, D], mlp/wi, mlp/wo, ln_attention, ln_mlp), so LoRA and adapters hook the same
places (`hooks`: mtl_jax/sharing/peft_layer.py; the gated wi_0 / wi_1 are no LoRA targets).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mtl_jax.models import families, projections, segments
from mtl_jax.models.encoder import EncoderConfig, param_init
from mtl_jax.scale import precision


class RMSNorm(nn.Module):
  """T5LayerNorm: x / sqrt(mean(x^2) + eps) * scale, statistics in float32."""
  epsilon: float = 1e-6
  param_dtype: str = "float32"

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", param_init(nn.initializers.ones, ("embed",)), (x.shape[-1],),
                       precision.dtype(self.param_dtype))
    x32 = x.astype(jnp.float32)
    y = x32 * jnp.reciprocal(jnp.sqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.epsilon))
    return (scale.astype(jnp.float32) * y).astype(x.dtype)


def relative_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
  """[L, L] bucket of (key position - query position), bidirectional, as HF's _relative_position_bucket
  (float32 logs, truncated toward zero)."""
  rel = np.arange(length)[None, :] - np.arange(length)[:, None]
  half = num_buckets // 2
  out = (rel > 0).astype(np.int64) * half
  n = np.abs(rel)
  max_exact = half // 2
  with np.errstate(divide="ignore"):
    scaled = (np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact))
              / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact))
  large = np.minimum(max_exact + scaled.astype(np.int64), half - 1)
  return (out + np.where(n < max_exact, n, large)).astype(np.int32)


class RelativeBias(nn.Module):
  """The shared table [buckets, heads] -> bias [1, H, L, L] (float32) for sequences of length L."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, length: int):
    cfg = self.config
    table = self.param("embedding", param_init(nn.initializers.normal(1.0), (None, "heads")),
                       (cfg.relative_buckets, cfg.num_heads), cfg.params_dtype)
    buckets = relative_buckets(length, cfg.relative_buckets, cfg.relative_max_distance)
    return jnp.transpose(table.astype(jnp.float32)[buckets], (2, 0, 1))[None]


def layer_inputs(cfg: EncoderConfig, mask, length: int):
  """Call inside the module that owns the layer stack: (mask, the shared relative bias)."""
  return mask, RelativeBias(cfg, name="positions")(length)


def embed(module: nn.Module, input_ids, deterministic: bool, token_type_ids=None):
  """encoder.Embedder's body for T5: the shared token table, then dropout."""
  del token_type_ids  # no token-type embeddings in this layout
  cfg = module.config
  x = nn.Embed(cfg.vocab_size, cfg.d_model, name="token", param_dtype=cfg.params_dtype,
               embedding_init=param_init(nn.initializers.normal(1.0), ("vocab", "embed")))(input_ids)
  return nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)


class T5Attention(nn.Module):
  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask, bias_1HLL, deterministic: bool, hooks):
    cfg = self.config
    dt = cfg.compute_dtype
    x = x.astype(dt)
    proj = lambda name: projections.in_projection(self, name, x, hooks, bias=False)
    q_BLHK, k_BLHK, v_BLHK = proj("query"), proj("key"), proj("value")
    logits_BHLL = jnp.einsum("bqhk,bshk->bhqs", q_BLHK, k_BLHK).astype(jnp.float32) + bias_1HLL
    logits_BHLL = jnp.where(segments.attention_allowed(mask), logits_BHLL, jnp.finfo(jnp.float32).min)
    probs_BHLL = nn.Dropout(cfg.dropout_rate)(nn.softmax(logits_BHLL, axis=-1), deterministic=deterministic)
    out_BLHK = jnp.einsum("bhqs,bshk->bqhk", probs_BHLL.astype(dt), v_BLHK)
    return projections.out_projection(self, out_BLHK, hooks, bias=False)


class T5Mlp(nn.Module):
  config: EncoderConfig

  @nn.compact
  def __call__(self, x, deterministic: bool, hooks):
    cfg = self.config
    act = nn.relu if cfg.mlp_activation == "relu" else (lambda h: nn.gelu(h, approximate=not cfg.gelu_exact))
    dense = lambda name, features, axes, inp: projections.dense(cfg, name, features, axes, inp, hooks, bias=False)
    if cfg.mlp_gated:
      h = act(dense("wi_0", cfg.mlp_dim, ("embed", "mlp"), x)) * dense("wi_1", cfg.mlp_dim, ("embed", "mlp"), x)
    else:
      h = act(dense("wi", cfg.mlp_dim, ("embed", "mlp"), x))
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return dense("wo", cfg.d_model, ("mlp", "embed"), h)


class T5Layer(nn.Module):
  """x [B, L, D] -> [B, L, D]; layer_mask = (mask [B, L], relative bias [1, H, L, L]) from layer_inputs.

  hooks (adapters / LoRA: peft_layer.Hooks) rewrite sublayer outputs and add low-rank deltas; None: none."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, layer_mask, deterministic: bool = True, hooks=None):
    cfg = self.config
    mask, bias_1HLL = layer_mask
    hooks = hooks if hooks is not None else families.NoHooks()
    norm = lambda name: RMSNorm(cfg.layer_norm_eps, cfg.param_dtype, name=name)
    drop = lambda h: nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    h = T5Attention(cfg, name="attention")(norm("ln_attention")(x), mask, bias_1HLL, deterministic, hooks)
    x = x + hooks.adapt("attention", drop(h)).astype(x.dtype)
    h = T5Mlp(cfg, name="mlp")(norm("ln_mlp")(x), deterministic, hooks)
    x = x + hooks.adapt("mlp", drop(h)).astype(x.dtype)
    if self.name == f"layer_{cfg.num_layers - 1}":  # HF encoder.final_layer_norm + dropout close the stack
      x = drop(norm("ln_final")(x))
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


families.register("t5", layer=T5Layer, peft_layer=T5Layer, embed=embed, layer_inputs=layer_inputs)
