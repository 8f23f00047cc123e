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
from mtl_jax.models import segments
from mtl_jax.models.encoder import param_init


class TaskHeads(nn.Module):
  num_classes: Sequence[int]  # per task; 1 for regression
  pooling: str = "mean"       # sequence-level heads read the masked mean, or the first ([CLS]) token

  @nn.compact
  def __call__(self, h_BLD, mask_BL, task_id_B, num_segments: int | None = None) -> HeadOutputs:
    """num_segments S (packed rows: mask_BL holds segment ids): pooled logits per example, [B, S, C]."""
    num_tasks, width = len(self.num_classes), max(self.num_classes)
    d = h_BLD.shape[-1]
    kernel_TDC = self.param("kernel", param_init(nn.initializers.lecun_normal(), ("tasks", "embed", "classes")),
                            (num_tasks, d, width))
    bias_TC = self.param("bias", param_init(nn.initializers.zeros, ("tasks", "classes")), (num_tasks, width))
    kernel_BDC, bias_BC = kernel_TDC[task_id_B], bias_TC[task_id_B]
    valid_BC = jnp.arange(width)[None] < jnp.asarray(self.num_classes)[task_id_B][:, None]
    neg = jnp.finfo(h_BLD.dtype).min
    token_BLC = jnp.einsum("bld,bdc->blc", h_BLD, kernel_BDC) + bias_BC[:, None]
    if num_segments is not None:  # packed rows: one pooled vector per example (models/segments.py)
      pooled_BSD = segments.pool(h_BLD, mask_BL, num_segments, self.pooling)
      pooled_BSC = jnp.einsum("bsd,bdc->bsc", pooled_BSD, kernel_BDC) + bias_BC[:, None]
      return HeadOutputs(jnp.where(valid_BC[:, None], pooled_BSC, neg), jnp.where(valid_BC[:, None], token_BLC, neg))
    m_BL1 = mask_BL[..., None].astype(h_BLD.dtype)
    if self.pooling == "cls":
      pooled_BD = h_BLD[:, 0]
    else:
      pooled_BD = (h_BLD * m_BL1).sum(1) / jnp.maximum(m_BL1.sum(1), 1.0)
    pooled_BC = jnp.einsum("bd,bdc->bc", pooled_BD, kernel_BDC) + bias_BC
    return HeadOutputs(jnp.where(valid_BC, pooled_BC, neg), jnp.where(valid_BC[:, None], token_BLC, neg))
