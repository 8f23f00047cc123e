"""gls (Chennupati et al. 2019): minimise the geometric mean of the task losses,
(prod_t l_t)^(1/n). Its gradient is sum_t GLS / (n l_t) grad l_t: those are the weights,
and sum_t w_t l_t equals the GLS value itself."""

import gin
import jax.numpy as jnp

from mtl_jax.weighting import base


class GLS(base.Method):
  def __init__(self, eps: float):
    self.eps = eps

  def weights(self, state, ctx):
    present = ctx.present_T
    n = jnp.maximum(present.sum(), 1.0)
    log_l = jnp.log(ctx.loss_T + self.eps)
    gls = jnp.exp((log_l * present).sum() / n)
    return present * gls / (n * (ctx.loss_T + self.eps)), state


@base.register("gls")
@gin.configurable("gls", module="mtl_jax.weighting")
def gls(num_tasks: int, eps: float = 1e-8) -> base.Method:
  return GLS(float(eps))
