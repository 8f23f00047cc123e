"""Hard parameter sharing: one trunk for every task; tasks differ only in their heads."""

import gin

from mtl_jax.models.encoder import LayerStack, final_norm
from mtl_jax.sharing.base import SharingStrategy, register

import flax.linen as nn


class HardSharing(SharingStrategy):

  @nn.compact
  def __call__(self, x, mask, task_id, deterministic: bool = True, grouped: bool = False):
    del task_id  # every task uses the same trunk
    layers_KBLD = LayerStack(self.config, name="trunk")(x, mask, deterministic)
    return final_norm(self.config)(layers_KBLD[-1])


@register("hard")
@gin.configurable("hard_sharing")
def hard(config, num_tasks):
  return HardSharing(config, num_tasks)
