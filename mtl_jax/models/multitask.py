"""The multi-task model: shared embeddings -> pluggable sharing trunk -> per-task heads."""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl_jax.heads import HeadOutputs
from mtl_jax.models import choice_pairs, segments
from mtl_jax.models.encoder import EncoderConfig, Embedder
from mtl_jax.models.heads import TaskHeads
from mtl_jax.sharing import SharingStrategy


class MultiTaskModel(nn.Module):
  config: EncoderConfig
  trunk: SharingStrategy
  num_classes: Sequence[int]

  @nn.compact
  def __call__(self, batch: Mapping[str, jax.Array], deterministic: bool = True,
               grouped: bool = False) -> HeadOutputs:
    packed = segments.is_packed(batch)  # several examples per row (input/packing.py): mask = segment ids
    mask = batch["segment_ids"] if packed else batch["input_mask"]
    attend, positions = mask, batch.get("positions")
    if "tags" in batch:  # multiple choice, per-pair layout: each (context, choice) pair its own segment
      attend, positions = choice_pairs.trunk_inputs(mask, batch["tags"], positions)
    x = Embedder(self.config, name="embedder")(batch["input_ids"], deterministic, batch.get("token_type_ids"),
                                               positions)
    h = self.trunk(x, attend, batch["task_id"], deterministic, grouped=grouped)
    h = h.astype(jnp.float32)  # heads and losses in float32 whatever EncoderConfig.dtype (a no-op by default)
    h = self.perturb("rep", h)  # identity unless a 'perturbations' collection is passed (weighting rep_grad)
    return TaskHeads(tuple(self.num_classes), self.config.pooling, name="heads")(
        h, mask, batch["task_id"], batch["label"].shape[1] if packed else None)


def build_model(config: EncoderConfig, sharing: str, num_classes: Sequence[int]) -> MultiTaskModel:
  from mtl_jax import sharing as sharing_lib
  trunk = sharing_lib.build(sharing, config, len(num_classes))
  return MultiTaskModel(config=config, trunk=trunk, num_classes=tuple(num_classes))
