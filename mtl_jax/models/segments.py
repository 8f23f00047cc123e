"""Packed rows in the model: keep each example of a row on its own (mtl_jax/input/packing.py).

Why one module: a packed row must give every example exactly the logits and loss it has alone,
and that takes four things in four places; each place calls one function here.

The trunk's `mask` argument is the row's segment ids (0 = padding, 1..S = example; an unpacked
row's input_mask is the one-segment case), so every sharing strategy passes it through unchanged:
  attention_allowed   query q reads key k iff k is real and in q's segment (block-diagonal); a
                      padding query reads every real key, as before (its output is never read)
  segment_positions   each token's position in its own segment (rotary layouts: ModernBERT)
  token_segment_mean  per token, the mean of its segment's inputs (MMoE's per-example gate)
  pool                [B, S, D] per example: the mean of its tokens, or its first token ('cls')
  example_view        packed HeadOutputs + batch -> per-example [B*S] ones, so each head kind's
                      example_loss (and tagging's per-token loss) runs unchanged
  row_losses          per-example losses averaged per row; the row's weight is its example count
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

from mtl_jax.heads import HeadOutputs


def is_packed(batch: Mapping) -> bool:
  return "segment_ids" in batch


def attention_allowed(mask_BL):
  """[B, 1, L, L] bool: key real and (same segment as the query, or the query is padding)."""
  q, k = mask_BL[:, None, :, None], mask_BL[:, None, None, :]
  return (k > 0) & ((q == k) | (q == 0))


def segment_positions(mask_BL):
  """[B, L] int32: each token's position in its own segment (0 at its first token), from the segment ids
  alone (segments are contiguous runs: mtl_jax/input/packing.py), so layers that only get the mask can
  restart their positions. An unpacked row's real tokens get 0..n-1, as without packing."""
  idx_L = jnp.arange(mask_BL.shape[1], dtype=jnp.int32)
  starts_BL = jnp.concatenate([jnp.ones_like(mask_BL[:, :1], bool), mask_BL[:, 1:] != mask_BL[:, :-1]], axis=1)
  return idx_L - jax.lax.cummax(jnp.where(starts_BL, idx_L, 0), axis=1)


def token_segment_mean(x_BLD, mask_BL):
  """[B, L, D]: each token's segment mean of x (padding tokens: the mean over the row's real tokens)."""
  allowed_BLL = attention_allowed(mask_BL)[:, 0].astype(x_BLD.dtype)
  return jnp.einsum("bqk,bkd->bqd", allowed_BLL, x_BLD) / jnp.maximum(allowed_BLL.sum(-1), 1.0)[..., None]


def pool(h_BLD, segment_ids_BL, num_segments: int, pooling: str):
  """[B, S, D]: each example's mean over its tokens ('mean') or its first token ('cls'); 0 in empty slots."""
  member_BLS = segment_ids_BL[..., None] == jnp.arange(1, num_segments + 1)
  if pooling == "cls":
    first_BS = jnp.argmax(member_BLS, axis=1)
    return jnp.take_along_axis(h_BLD, first_BS[..., None], axis=1) * member_BLS.any(1)[..., None]
  m_BLS = member_BLS.astype(h_BLD.dtype)
  return jnp.einsum("bls,bld->bsd", m_BLS, h_BLD) / jnp.maximum(m_BLS.sum(1), 1.0)[..., None]


def example_view(out: HeadOutputs, batch: Mapping[str, jax.Array]) -> tuple[HeadOutputs, dict]:
  """Packed outputs (pooled [B, S, C], token [B, L, C]) and batch -> one row per example slot [B*S]:
  pooled logits, the row's token logits with tags / input_mask kept on the example's own tokens only."""
  seg_BL = batch["segment_ids"]
  b, s = batch["label"].shape
  member_BSL = seg_BL[:, None, :] == jnp.arange(1, s + 1)[None, :, None]
  flat = lambda x: x.reshape((b * s,) + x.shape[2:])
  token_ESLC = jnp.broadcast_to(out.token_logits[:, None], (b, s) + out.token_logits.shape[1:])
  view = {
      "task_id": jnp.repeat(batch["task_id"], s),
      "label": flat(batch["label"]), "score": flat(batch["score"]), "weight": flat(batch["segment_weight"]),
      "tags": flat(jnp.where(member_BSL, batch["tags"][:, None], -1)),
      "input_mask": flat(member_BSL.astype(jnp.int32)),
  }
  return HeadOutputs(flat(out.pooled_logits), flat(token_ESLC)), view


def row_losses(out: HeadOutputs, batch: Mapping[str, jax.Array], task_kinds: Sequence[str], example_losses):
  """[B]: each row's mean per-example loss (weighted by segment_weight); with the row weight = its example
  count, per-task means over rows are per-task means over examples. example_losses: losses.example_losses."""
  out_E, view = example_view(out, batch)
  b, s = batch["label"].shape
  loss_BS = example_losses(out_E, view, task_kinds).reshape(b, s)
  w_BS = batch["segment_weight"].astype(loss_BS.dtype)
  return (loss_BS * w_BS).sum(1) / jnp.maximum(w_BS.sum(1), 1e-12)
