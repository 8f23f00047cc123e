"""Per-example losses by head kind, per-task means, and the task weighting.

No loop over tasks: per-task means are segment sums over task_id. The weighting
that turns per-task losses into one scalar is a gin choice:
  'uniform'  mean over the tasks present in the batch of each task's mean loss
             (every task counts equally whatever its sampling rate)
  'examples' mean over examples (tasks count by how often they are sampled)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import gin
import jax
import jax.numpy as jnp

from mtl_jax import heads as heads_lib

WEIGHTINGS = ("uniform", "examples")


def example_losses(out: heads_lib.HeadOutputs, batch: Mapping[str, jax.Array],
                   task_kinds: Sequence[str]) -> jax.Array:
  """Loss [B] of each example under its own task's head kind."""
  kind_of_task = jnp.asarray([heads_lib.kind_index(k) for k in task_kinds])
  kind_B = kind_of_task[batch["task_id"]]
  loss_B = jnp.zeros(batch["task_id"].shape, out.pooled_logits.dtype)
  for i, kind in enumerate(heads_lib.KIND_ORDER):
    if kind in task_kinds:  # static: only kinds present in this run
      loss_B = jnp.where(kind_B == i, heads_lib.KINDS[kind].example_loss(out, batch), loss_B)
  return loss_B


def per_task_mean(loss_B, weight_B, task_id_B, num_tasks: int):
  """(mean loss [T], example count [T]); tasks absent from the batch get 0 / 0."""
  total_T = jax.ops.segment_sum(loss_B * weight_B, task_id_B, num_segments=num_tasks)
  count_T = jax.ops.segment_sum(weight_B, task_id_B, num_segments=num_tasks)
  return total_T / jnp.maximum(count_T, 1.0), count_T


@gin.configurable
def combine_task_losses(task_loss_T, count_T, weighting: str = "uniform"):
  if weighting == "uniform":
    present = (count_T > 0).astype(task_loss_T.dtype)
    return (task_loss_T * present).sum() / jnp.maximum(present.sum(), 1.0)
  if weighting == "examples":
    return (task_loss_T * count_T).sum() / jnp.maximum(count_T.sum(), 1.0)
  raise ValueError(f"unknown loss weighting {weighting!r}; use one of {WEIGHTINGS}")
