"""Per-example losses by head kind, per-task means, and the old gin task weighting.

No loop over tasks: per-task means are segment sums over task_id. How the per-task
losses become one scalar (or how their gradients combine) is mtl_jax/weighting/
(gin `weighting.method`); `combine_task_losses.weighting` is the old switch, kept so
old configs still run: 'uniform' is the 'equal' method, 'examples' the 'examples' one.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import gin
import jax
import jax.numpy as jnp

from mtl_jax import heads as heads_lib
from mtl_jax.models import segments

WEIGHTINGS = ("uniform", "examples")
LEGACY_METHOD = {"uniform": "equal", "examples": "examples"}


def example_losses(out: heads_lib.HeadOutputs, batch: Mapping[str, jax.Array],
                   task_kinds: Sequence[str]) -> jax.Array:
  """Loss [B] of each example under its own task's head kind (packed rows: each row's mean over its
  examples, models/segments.py; the row's weight is its example count)."""
  if segments.is_packed(batch):
    return segments.row_losses(out, batch, task_kinds, example_losses)
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


def weighted_task_term(weight_T, task_loss_T):
  """sum_t w_t l_t with the weights held constant (methods choose w; only l is differentiated)."""
  return (jax.lax.stop_gradient(weight_T) * task_loss_T).sum()


def _check(weighting):
  if weighting not in WEIGHTINGS:
    raise ValueError(f"unknown loss weighting {weighting!r}; use one of {WEIGHTINGS}, or (newer) "
                     "include gin/weighting/<method>.gin")


@gin.configurable
def combine_task_losses(task_loss_T, count_T, weighting: str = "uniform"):
  """The old weighting as a function: 'uniform' (mean over present tasks) or 'examples'."""
  _check(weighting)
  if weighting == "uniform":
    present = (count_T > 0).astype(task_loss_T.dtype)
    return (task_loss_T * present).sum() / jnp.maximum(present.sum(), 1.0)
  return (task_loss_T * count_T).sum() / jnp.maximum(count_T.sum(), 1.0)


def legacy_weighting() -> str | None:
  """The weighting method the old gin binding names, or None when it is not bound."""
  try:
    value = gin.query_parameter("losses.combine_task_losses.weighting")
  except ValueError:
    return None
  _check(value)
  return LEGACY_METHOD[value]
