"""Building blocks the non-hard strategies share: a whole-trunk tower, stacked
copies of a module on a named leading axis, and a per-task LayerNorm.

Stacking is `nn.vmap` over a parameter axis (one batched computation, no Python
loop over tasks or experts); the axis gets a logical name so towers can later be
sharded across devices with a `('tasks', 'model')` axis rule.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mtl_jax.models.encoder import EncoderConfig, LayerStack, final_norm, param_init


class Tower(nn.Module):
  """The hard trunk's architecture as one unit: K layers + final LayerNorm (pre-LN), [B, L, D] -> [B, L, D]."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask, deterministic: bool = True):
    return final_norm(self.config)(LayerStack(self.config, name="layers")(x, mask, deterministic)[-1])


def stacked(module_cls, size: int, axis_name: str, in_axes=(0, None, None)):
  """`module_cls` with its params stacked `size` times on a leading axis named `axis_name`.

  Each copy gets its own init and dropout randomness. `in_axes` maps the call's
  (x, mask, deterministic): 0 = one input per copy, None = every copy sees the same.
  Outputs gain the leading axis.
  """
  return nn.vmap(module_cls, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                 in_axes=in_axes, out_axes=0, axis_size=size,
                 metadata_params={nn.PARTITION_NAME: axis_name})


class TaskLayerNorm(nn.Module):
  """LayerNorm whose scale and bias belong to each example's task (a gather by task id)."""

  num_tasks: int
  epsilon: float = 1e-6  # nn.LayerNorm's default, so one task's slice equals encoder.LayerNorm

  @nn.compact
  def __call__(self, x_BLD, task_id_B):
    d = x_BLD.shape[-1]
    scale_TD = self.param("scale", param_init(nn.initializers.ones, ("tasks", "embed")), (self.num_tasks, d))
    bias_TD = self.param("bias", param_init(nn.initializers.zeros, ("tasks", "embed")), (self.num_tasks, d))
    normed = nn.LayerNorm(use_scale=False, use_bias=False, epsilon=self.epsilon)(x_BLD)
    return normed * scale_TD[task_id_B][:, None] + bias_TD[task_id_B][:, None]


def own_rows(h_TB, task_id_B):
  """h [T, B, ...] -> [B, ...]: each example's row of its own task."""
  return h_TB[task_id_B, jnp.arange(task_id_B.shape[0])]
