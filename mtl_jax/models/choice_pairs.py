"""Multiple-choice rows in the per-pair layout: each (context, choice_i) pair encoded on its own.

Why: a multiple-choice example keeps all its choices in one row (the softmax needs them together),
but each pair should be encoded as the checkpoint was pretrained, alone (heads/multiple_choice.py).
The per-pair layout tags every token of pair i with multiple_choice.pair_tag(i); here those tags become
segments for the trunk, the same machinery packing uses (models/segments.py): the attention ids of a
pair's tokens are unique per (row segment, pair), so attention is block-diagonal per pair, and
positions restart at 0 on each pair's first token. Rows without such tags (every other task, the
'one_row' layout) keep their mask and positions bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl_jax.heads import multiple_choice


def trunk_inputs(mask_BL, tags_BL, positions_BL=None):
  """(attention ids [B, L], positions [B, L] or None) for the trunk and the Embedder.

  mask_BL: input_mask or a packed row's segment ids (0 = padding). A pair token's id is
  segment * (MAX_CHOICES + 1) + i + 1 (> every plain segment id of a packed row: a row holds one task)."""
  pair_BL = jnp.where((tags_BL <= multiple_choice.PAIR_TAG) & (mask_BL > 0),
                      multiple_choice.PAIR_TAG - tags_BL + 1, 0)
  has_pairs_B = (pair_BL > 0).any(1)
  ids_BL = jnp.where(pair_BL > 0, mask_BL * (multiple_choice.MAX_CHOICES + 1) + pair_BL, mask_BL)
  idx_L = jnp.arange(mask_BL.shape[1])
  starts_BL = jnp.concatenate([jnp.ones_like(ids_BL[:, :1], bool), ids_BL[:, 1:] != ids_BL[:, :-1]], axis=1)
  run_start_BL = jax.lax.cummax(jnp.where(starts_BL, idx_L, 0), axis=1)
  restarted_BL = idx_L - run_start_BL
  base_BL = jnp.broadcast_to(idx_L, mask_BL.shape) if positions_BL is None else positions_BL
  positions = jnp.where(has_pairs_B[:, None], restarted_BL, base_BL)
  return ids_BL, positions
