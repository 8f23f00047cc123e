"""The sharing-strategy interface: how a batch of many tasks runs through the trunk.

A strategy is a Flax module
    __call__(x [B, L, D] embedded tokens, mask [B, L], task_id [B], deterministic, grouped)
        -> hidden [B, L, D], each example's representation for its own task's head
`grouped` is a static promise that the batch holds exactly B/T rows of every task
(the 'grouped' train layout); a strategy may use it to skip per-example gathers
(soft sharing does) and must give the same result either way.
and may add regularisers with `self.sow('penalties', name, scalar)`; the training
loss adds every sown penalty. Per-task parameters must live on a leading axis with
logical name 'tasks' (no Python loop over tasks). Strategies register a gin-
configurable factory `factory(config, num_tasks) -> SharingStrategy` by name.
"""

from __future__ import annotations

import flax.linen as nn

from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.registry import Registry


class SharingStrategy(nn.Module):
  config: EncoderConfig
  num_tasks: int

  def __call__(self, x, mask, task_id, deterministic: bool = True, grouped: bool = False):
    raise NotImplementedError


_REGISTRY = Registry("sharing strategy", "gin/sharing")
register, names = _REGISTRY.register, _REGISTRY.names


def build(name: str, config: EncoderConfig, num_tasks: int) -> SharingStrategy:
  return _REGISTRY.get(name)(config, num_tasks)
