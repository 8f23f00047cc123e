"""examples: tasks count by their examples in the batch (the mean over examples), so
sampling rates decide the weighting; the old `combine_task_losses.weighting = 'examples'`."""

import gin
import jax.numpy as jnp

from mtl_jax.weighting import base


class Examples(base.Method):
  def weights(self, state, ctx):
    return ctx.count_T / jnp.maximum(ctx.count_T.sum(), 1.0), state


@base.register("examples")
@gin.configurable("examples", module="mtl_jax.weighting")
def examples(num_tasks: int) -> base.Method:
  return Examples()
