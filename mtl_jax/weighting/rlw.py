"""rlw (Lin et al. 2022, random loss weighting): softmax of fresh normal draws each step.
The draws come from fold_in(seed, step), so a resumed run draws the same weights."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base


class RLW(base.Method):
  def weights(self, state, ctx):
    z = jax.random.normal(ctx.rng, ctx.loss_T.shape)
    z = jnp.where(ctx.present_T > 0, z, -jnp.inf)
    return jax.nn.softmax(z), state


@base.register("rlw")
@gin.configurable("rlw", module="mtl_jax.weighting")
def rlw(num_tasks: int) -> base.Method:
  return RLW()
