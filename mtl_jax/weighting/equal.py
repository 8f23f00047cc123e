"""equal (the default): every task present in the batch counts the same, whatever its
sampling rate; the same loss as the old `combine_task_losses.weighting = 'uniform'`."""

import gin

from mtl_jax.weighting import base


class Equal(base.Method):
  def weights(self, state, ctx):
    return base.mean_present(ctx), state


@base.register("equal")
@gin.configurable("equal", module="mtl_jax.weighting")
def equal(num_tasks: int) -> base.Method:
  return Equal()
