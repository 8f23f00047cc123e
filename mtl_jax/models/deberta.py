"""DeBERTa-v2 / v3 as a trunk layout: model_type 'deberta-v2' (He et al. 2021, HF DebertaV2Model).

What differs from the BERT layout (encoder.py):
  - no absolute positions in the embeddings (position_biased_input=False, as every v2 / v3
    checkpoint); the embeddings are LayerNormed after an optional projection (embed_proj,
    no bias) instead of before;
  - disentangled attention: besides content->content q.k, content->position q.k_r and
    position->content k.q_r, where k_r / q_r are the layer's OWN key / query projections
    (share_att_key) of ONE relative-position table shared by every layer (HF encoder.rel_embeddings
    + encoder.LayerNorm: ours `<stack>/positions/{embedding, ln}`, built by `layer_inputs` and
    handed to the layers with the mask); relative distances are log-bucketed beyond
    position_buckets / 2; every score is scaled by 1/sqrt(3 d).
Packed rows (mtl_jax/models/segments.py): attention is block-diagonal over the segment ids in `mask`;
relative distances (query index - key index) inside one contiguous segment ARE the differences of the
per-segment positions, so each example gets the c2p / p2c scores it has alone.
Layers are otherwise BERT's (post-LN, the same param names: attention/{query,key,value,out}_*,
ln_attention, mlp/wi, mlp/wo, ln_mlp), so LoRA, adapters and AdapterFusion hook the same places.
Not supported (refused by the checkpoint reader): the conv layer of deberta-v2-xlarge / xxlarge,
separate position projections (share_att_key=False), position_biased_input=True.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mtl_jax.models import families, projections, segments
from mtl_jax.models.encoder import EncoderConfig, LayerNorm, _DENSE_INIT, param_init, residual_block


def span(cfg: EncoderConfig) -> int:
  """Half the relative table: position_buckets, or max_relative_positions without buckets."""
  return cfg.relative_buckets or cfg.relative_max_distance


def relative_positions(length: int, buckets: int, max_position: int) -> np.ndarray:
  """[L, L] (query - key) distance, log-bucketed as HF's make_log_bucket_position (float32, ceil)."""
  rel = np.arange(length)[:, None] - np.arange(length)[None, :]
  if not (buckets > 0 and max_position > 0):
    return rel.astype(np.int32)
  mid = buckets // 2
  abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel)).astype(np.float32)
  log_pos = (np.ceil(np.log(abs_pos / np.float32(mid)) / np.log(np.float32((max_position - 1) / mid))
                     * np.float32(mid - 1)) + mid)
  return np.where(abs_pos <= mid, rel.astype(np.float32), log_pos * np.sign(rel)).astype(np.int32)


class RelativeTable(nn.Module):
  """The shared [2 * span, D] relative embeddings, LayerNormed (norm_rel_ebd='layer_norm')."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, deterministic: bool = True):
    cfg = self.config
    table = self.param("embedding", param_init(nn.initializers.normal(0.02), (None, "embed")),
                       (2 * span(cfg), cfg.d_model), cfg.params_dtype)
    table = LayerNorm(cfg.layer_norm_eps, cfg.param_dtype, name="ln")(table.astype(jnp.float32))
    return nn.Dropout(cfg.dropout_rate)(table, deterministic=deterministic)  # HF's pos_dropout


def layer_inputs(cfg: EncoderConfig, mask, length: int):
  """Call inside the module that owns the layer stack: (mask, the shared relative table)."""
  del length  # the relative positions are computed per layer from the input's length (static)
  return mask, RelativeTable(cfg, name="positions")()


def embed(module: nn.Module, input_ids, deterministic: bool, token_type_ids=None):
  """encoder.Embedder's body for DeBERTa-v2: tokens (+ token types), projection, LayerNorm, dropout."""
  cfg = module.config
  init = nn.initializers.normal(0.02)
  width = cfg.embed_dim or cfg.d_model
  x = nn.Embed(cfg.vocab_size, width, name="token", embedding_init=param_init(init, ("vocab", "embed")),
               param_dtype=cfg.params_dtype)(input_ids)
  if cfg.type_vocab_size:  # segments: 1 on a native pair's second text (mtl_jax/input/pairs.py), else 0
    table = module.param("token_type", param_init(init, (None, "embed")), (cfg.type_vocab_size, width),
                         cfg.params_dtype)
    x = x + (table[0] if token_type_ids is None else table[jnp.clip(token_type_ids, 0, cfg.type_vocab_size - 1)])
  if cfg.embed_dim:
    x = nn.Dense(cfg.d_model, name="projection", use_bias=False, dtype=cfg.compute_dtype,
                 param_dtype=cfg.params_dtype, kernel_init=param_init(_DENSE_INIT, (None, "embed")))(x)
  x = LayerNorm(cfg.layer_norm_eps, cfg.param_dtype, name="ln")(x)
  return nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)


class DisentangledAttention(nn.Module):
  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask, rel_RD, deterministic: bool, hooks):
    cfg = self.config
    dt = cfg.compute_dtype
    x = x.astype(dt)
    k = cfg.head_dim
    kernels = {name: projections.head_kernels(self, name, bias=True) for name in ("query", "key", "value")}
    q_BLHK, k_BLHK, v_BLHK = (projections.project_heads(x, kernels[name], hooks, name)
                              for name in ("query", "key", "value"))
    # The table goes through the layer's own query / key projections (share_att_key); with a LoRA on
    # them each example's table projection carries its task's update, so a merged export is exact.
    length, s = x.shape[1], span(cfg)
    rel = relative_positions(length, cfg.relative_buckets, cfg.relative_max_distance)
    # Only the table rows an L-token input can reach (s +- max |bucket|) are projected and scored: a v3
    # table has 2 x 256 rows, a 128-token input reaches 255 of them (the scores are the same; HF projects all).
    reach = int(np.abs(rel).max())
    lo, hi = max(s - reach, 0), min(s + reach, 2 * s - 1) + 1
    rel_RD = rel_RD[lo:hi].astype(dt)
    c2p_pos = np.clip(rel + s, 0, 2 * s - 1) - lo
    p2c_pos = np.clip(-rel + s, 0, 2 * s - 1) - lo  # [key, query] (rel is symmetric up to sign)
    def table_proj(name):  # [R, H, K] for every example, or [B, R, H, K] where a LoRA adapts `name`
      w_DHK, b_HK = kernels[name]
      y = jnp.einsum("rd,dhk->rhk", rel_RD, w_DHK.astype(dt)) + b_HK.astype(dt)
      delta = hooks.lora(name, jnp.broadcast_to(rel_RD[None], (x.shape[0],) + rel_RD.shape))
      return y if delta is None else y[None] + delta.reshape((x.shape[0],) + y.shape).astype(dt)
    pos_q, pos_k = table_proj("query"), table_proj("key")
    with_table = lambda spec, a, pos: jnp.einsum(spec.replace("r", "br", 1) if pos.ndim == 4 else spec, a, pos)
    scale = np.float32(np.sqrt(np.float32(k) * 3))  # 1 + c2p + p2c
    rows = np.arange(length)[:, None]
    logits = jnp.einsum("bqhk,bshk->bhqs", q_BLHK, k_BLHK).astype(jnp.float32) / scale
    c2p_BHLR = with_table("bqhk,rhk->bhqr", q_BLHK, pos_k).astype(jnp.float32)
    p2c_BHLR = with_table("bshk,rhk->bhsr", k_BLHK, pos_q).astype(jnp.float32)
    logits = logits + c2p_BHLR[:, :, rows, c2p_pos] / scale
    logits = logits + jnp.swapaxes(p2c_BHLR[:, :, rows, p2c_pos], -1, -2) / scale
    logits = jnp.where(segments.attention_allowed(mask), logits, jnp.finfo(jnp.float32).min)
    probs = nn.Dropout(cfg.dropout_rate)(nn.softmax(logits, axis=-1), deterministic=deterministic)
    out_BLHK = jnp.einsum("bhqs,bshk->bqhk", probs.astype(dt), v_BLHK)
    return projections.out_projection(self, out_BLHK, hooks, bias=True)


class Mlp(nn.Module):
  """BERT's feed-forward (encoder.Mlp: same params, post-LN so no inner dropout) with the LoRA seam."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, deterministic: bool, hooks):
    del deterministic
    cfg = self.config
    dense = lambda name, features, axes, inp: projections.dense(cfg, name, features, axes, inp, hooks, bias=True)
    h = dense("wi", cfg.mlp_dim, ("embed", "mlp"), x)
    h = nn.with_logical_constraint(nn.gelu(h, approximate=not cfg.gelu_exact), ("batch", "length", "mlp"))
    return dense("wo", cfg.d_model, ("mlp", "embed"), h)


class DebertaLayer(nn.Module):
  """x [B, L, D] -> [B, L, D]; layer_mask = (mask [B, L], relative table [2S, D]) from layer_inputs;
  hooks: peft_layer.Hooks (None: none). Post-LN as BERT."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, layer_mask, deterministic: bool = True, hooks=None):
    cfg = self.config
    mask, rel_RD = layer_mask
    hooks = hooks if hooks is not None else families.NoHooks()
    drop = lambda h: nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    ln_attention = LayerNorm(cfg.layer_norm_eps, cfg.param_dtype, name="ln_attention")
    ln_mlp = LayerNorm(cfg.layer_norm_eps, cfg.param_dtype, name="ln_mlp")
    attention = lambda h: hooks.adapt("attention", drop(
        DisentangledAttention(cfg, name="attention")(h, mask, rel_RD, deterministic, hooks)))
    mlp = lambda h: hooks.adapt("mlp", drop(Mlp(cfg, name="mlp")(h, deterministic, hooks)))
    return residual_block("post", x, attention, mlp, ln_attention, ln_mlp)


families.register("deberta-v2", layer=DebertaLayer, peft_layer=DebertaLayer, embed=embed,
                  layer_inputs=layer_inputs)
