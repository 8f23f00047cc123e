"""All tasks' output layers as one stacked parameter on the 'tasks' axis.

Each example reads its own task's [D, C] slice (a gather by task_id), so a mixed
batch costs one head per example whatever the number of tasks. C is the largest
label set; logits of classes a task does not have are masked to -inf.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mtl_jax.heads import HeadOutputs
from mtl_jax.models.encoder import param_init


class TaskHeads(nn.Module):
  num_classes: Sequence[int]  # per task; 1 for regression
  pooling: str = "mean"       # sequence-level heads read the masked mean, or the first ([CLS]) token

  @nn.compact
  def __call__(self, h_BLD, mask_BL, task_id_B) -> HeadOutputs:
    num_tasks, width = len(self.num_classes), max(self.num_classes)
    d = h_BLD.shape[-1]
    kernel_TDC = self.param("kernel", param_init(nn.initializers.lecun_normal(), ("tasks", "embed", "classes")),
                            (num_tasks, d, width))
    bias_TC = self.param("bias", param_init(nn.initializers.zeros, ("tasks", "classes")), (num_tasks, width))
    m_BL1 = mask_BL[..., None].astype(h_BLD.dtype)
    if self.pooling == "cls":
      pooled_BD = h_BLD[:, 0]
    else:
      pooled_BD = (h_BLD * m_BL1).sum(1) / jnp.maximum(m_BL1.sum(1), 1.0)
    kernel_BDC, bias_BC = kernel_TDC[task_id_B], bias_TC[task_id_B]
    pooled_BC = jnp.einsum("bd,bdc->bc", pooled_BD, kernel_BDC) + bias_BC
    token_BLC = jnp.einsum("bld,bdc->blc", h_BLD, kernel_BDC) + bias_BC[:, None]
    valid_BC = jnp.arange(width)[None] < jnp.asarray(self.num_classes)[task_id_B][:, None]
    neg = jnp.finfo(h_BLD.dtype).min
    return HeadOutputs(jnp.where(valid_BC, pooled_BC, neg), jnp.where(valid_BC[:, None], token_BLC, neg))
