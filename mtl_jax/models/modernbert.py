"""ModernBERT (Warner et al. 2024) as a trunk layout: model_type 'modernbert' (HF ModernBertModel).

What differs from the BERT layout (encoder.py):
  - no biases anywhere (LayerNorms are scale-only), pre-LN: x + f(LN(x)); layer 0 has no
    attention norm (the embeddings end with one), the last layer ends with the final norm
    (HF final_norm: `layer_{K-1}/ln_final`), so the trunk adds none (EncoderConfig.norm='post');
  - rotary positions (no position table): base rope_theta on the global layers, rope_theta_local
    on the others; layer k is global when k % global_every == 0, else it attends only to keys with
    |query - key| <= sliding_window (HF's bidirectional sliding-window mask);
  - GeGLU feed-forward: GELU(x W_in) * (x W_gate), HF's fused Wi split into mlp/wi_0, mlp/wi_1;
  - token embeddings, LayerNorm, dropout.
Packed rows (mtl_jax/models/segments.py): attention is block-diagonal over the segment ids in `mask`
(the sliding window too), and rotary positions restart on each example's first token
(segments.segment_positions), so each example is rotated as it is alone.
A layer learns its index from its name (`layer_{k}`, as every strategy names them). Params keep the
BERT layout's roles (attention/{query,key,value}_kernel [D, H, K] split from HF's fused Wqkv,
attention/out_kernel, mlp/wo, ln_attention, ln_mlp), so LoRA (query / key / value / out / wo; the
gated wi_0 / wi_1 are no targets) and adapters hook the same places.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mtl_jax.models import families, projections, segments
from mtl_jax.models.encoder import EncoderConfig, param_init
from mtl_jax.scale import precision


class Norm(nn.Module):
  """LayerNorm without bias (ModernBERT's norm_bias=False), statistics in float32."""
  epsilon: float = 1e-5
  param_dtype: str = "float32"

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", param_init(nn.initializers.ones, ("embed",)), (x.shape[-1],),
                       precision.dtype(self.param_dtype))
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jnp.reciprocal(jnp.sqrt(var + self.epsilon)) * scale.astype(jnp.float32)).astype(x.dtype)


def rotary(length: int, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
  """cos, sin [L, K] (float32) of HF's default RoPE: frequencies theta^(-2i/K), halves concatenated."""
  inv_freq = 1.0 / (np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)))
  freqs = np.arange(length, dtype=np.float32)[:, None] * inv_freq[None].astype(np.float32)
  emb = np.concatenate([freqs, freqs], axis=-1)
  return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def _rotate(x_BLHK, cos_BLK, sin_BLK):
  half = x_BLHK.shape[-1] // 2
  rotated = jnp.concatenate([-x_BLHK[..., half:], x_BLHK[..., :half]], axis=-1)
  cos, sin = cos_BLK[:, :, None].astype(x_BLHK.dtype), sin_BLK[:, :, None].astype(x_BLHK.dtype)
  return x_BLHK * cos + rotated * sin


def embed(module: nn.Module, input_ids, deterministic: bool, token_type_ids=None):
  del token_type_ids  # no token-type embeddings in this layout
  cfg = module.config
  x = nn.Embed(cfg.vocab_size, cfg.d_model, name="token", param_dtype=cfg.params_dtype,
               embedding_init=param_init(nn.initializers.normal(0.02), ("vocab", "embed")))(input_ids)
  x = Norm(cfg.layer_norm_eps, cfg.param_dtype, name="ln")(x)
  return nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)


class Attention(nn.Module):
  config: EncoderConfig
  is_global: bool = True

  @nn.compact
  def __call__(self, x, mask, deterministic: bool, hooks):
    cfg = self.config
    dt = cfg.compute_dtype
    x = x.astype(dt)
    k, length = cfg.head_dim, x.shape[1]
    proj = lambda name: projections.in_projection(self, name, x, hooks, bias=False)
    cos, sin = rotary(length, k, cfg.rope_theta if self.is_global else cfg.rope_theta_local)
    positions_BL = segments.segment_positions(mask)  # restart per packed example; 0..L-1 unpacked
    cos, sin = jnp.asarray(cos)[positions_BL], jnp.asarray(sin)[positions_BL]
    q_BLHK, k_BLHK, v_BLHK = _rotate(proj("query"), cos, sin), _rotate(proj("key"), cos, sin), proj("value")
    logits = jnp.einsum("bqhk,bshk->bhqs", q_BLHK, k_BLHK).astype(jnp.float32) / np.float32(np.sqrt(k))
    valid = segments.attention_allowed(mask)  # block-diagonal over packed examples
    if not self.is_global:
      pos = np.arange(length)
      valid = valid & (np.abs(pos[:, None] - pos[None, :]) <= cfg.sliding_window)[None, None]
    logits = jnp.where(valid, logits, jnp.finfo(jnp.float32).min)
    probs = nn.Dropout(cfg.dropout_rate)(nn.softmax(logits, axis=-1), deterministic=deterministic)
    out_BLHK = jnp.einsum("bhqs,bshk->bqhk", probs.astype(dt), v_BLHK)
    return projections.out_projection(self, out_BLHK, hooks, bias=False)


class Mlp(nn.Module):
  config: EncoderConfig

  @nn.compact
  def __call__(self, x, deterministic: bool, hooks):
    cfg = self.config
    dense = lambda name, n, axes, inp: projections.dense(cfg, name, n, axes, inp, hooks, bias=False)
    h = nn.gelu(dense("wi_0", cfg.mlp_dim, ("embed", "mlp"), x), approximate=not cfg.gelu_exact)
    h = h * dense("wi_1", cfg.mlp_dim, ("embed", "mlp"), x)
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return dense("wo", cfg.d_model, ("mlp", "embed"), h)


class ModernBertLayer(nn.Module):
  """x [B, L, D] -> [B, L, D]; mask [B, L]; hooks: peft_layer.Hooks (None: none)."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask, deterministic: bool = True, hooks=None):
    cfg = self.config
    index = int(self.name.rsplit("_", 1)[-1])
    hooks = hooks if hooks is not None else families.NoHooks()
    norm = lambda name: Norm(cfg.layer_norm_eps, cfg.param_dtype, name=name)
    drop = lambda h: nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    h = x if index == 0 else norm("ln_attention")(x)
    h = Attention(cfg, index % cfg.global_every == 0, name="attention")(h, mask, deterministic, hooks)
    x = x + hooks.adapt("attention", drop(h)).astype(x.dtype)
    x = x + hooks.adapt("mlp", Mlp(cfg, name="mlp")(norm("ln_mlp")(x), deterministic, hooks)).astype(x.dtype)
    if index == cfg.num_layers - 1:  # HF final_norm closes the stack
      x = norm("ln_final")(x)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


families.register("modernbert", layer=ModernBertLayer, peft_layer=ModernBertLayer, embed=embed)
