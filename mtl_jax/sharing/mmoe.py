"""Multi-gate mixture of experts (Ma, Zhao, Yi, Chen, Hong, Chi, KDD 2018).

E shared experts, each a whole trunk tower (K layers + final LN), stacked on an
'experts' axis with nn.vmap and run on every example (~E x hard). Each task has a
softmax gate over experts, computed PER SEQUENCE (per example of a packed row) from the masked
mean of the embedded input tokens: gate[b] = softmax(pool(x_b) @ W[task_b] + c[task_b]);
an example's output is sum_e gate[b, e] * expert_e(x)_b at every token.
The gate kernel W [T, D, E] and bias c [T, E] are the 'gate logits' parameters.
"""

import flax.linen as nn
import gin
import jax.numpy as jnp

from mtl_jax.models import segments
from mtl_jax.models.encoder import EncoderConfig, param_init
from mtl_jax.sharing.base import SharingStrategy, register
from mtl_jax.sharing.towers import Tower, stacked


def masked_mean(x_BLD, mask_BL):
  m = mask_BL[..., None].astype(x_BLD.dtype)
  return (x_BLD * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


class MMoE(nn.Module):
  config: EncoderConfig
  num_tasks: int
  num_experts: int = 4

  @nn.compact
  def __call__(self, x, mask, task_id, deterministic: bool = True):
    experts = stacked(Tower, self.num_experts, "experts", in_axes=(None, None, None))
    h_EBLD = experts(self.config, name="experts")(x, mask, deterministic)
    d, e = x.shape[-1], self.num_experts
    kernel_TDE = self.param("gate_kernel", param_init(nn.initializers.lecun_normal(batch_axis=(0,)),
                                                      ("tasks", "embed", "experts")), (self.num_tasks, d, e))
    bias_TE = self.param("gate_bias", param_init(nn.initializers.zeros, ("tasks", "experts")), (self.num_tasks, e))
    # per token from its own example's mean (packed rows hold several; models/segments.py): one gate per example
    pooled_BLD = segments.token_segment_mean(x, mask)
    logits_BLE = jnp.einsum("bld,bde->ble", pooled_BLD, kernel_TDE[task_id]) + bias_TE[task_id][:, None]
    gate_BLE = nn.softmax(logits_BLE, axis=-1)
    self.sow("intermediates", "gate", gate_BLE[:, 0])  # an unpacked row's one gate
    return jnp.einsum("ble,ebld->bld", gate_BLE.astype(h_EBLD.dtype), h_EBLD)


class MMoESharing(SharingStrategy):
  num_experts: int = 4

  @nn.compact
  def __call__(self, x, mask, task_id, deterministic: bool = True, grouped: bool = False):
    return MMoE(self.config, self.num_tasks, self.num_experts, name="mmoe")(x, mask, task_id, deterministic)


@register("mmoe")
@gin.configurable("mmoe")
def mmoe(config, num_tasks, num_experts: int = 4):
  if not isinstance(num_experts, int) or num_experts < 1:
    raise ValueError(f"mmoe.num_experts must be a positive int, got {num_experts!r}")
  return MMoESharing(config, num_tasks, num_experts=num_experts)
