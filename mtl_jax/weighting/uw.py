"""uw (Kendall et al. 2018): learned log-variances s, loss sum_t exp(-s_t) l_t + s_t.

s is updated in closed form from its own gradient 1 - exp(-s_t) l_t by an inner Adam
(state in TrainState), so the optimum for fixed losses is s_t = log l_t, and the model
sees weights exp(-s_t) (divided by the number of present tasks, the mean convention)."""

import gin
import jax.numpy as jnp
import optax

from mtl_jax.weighting import base


class UW(base.Method):
  def __init__(self, learning_rate: float):
    self.tx = optax.adam(learning_rate)

  def init(self, num_tasks):
    s = jnp.zeros((num_tasks,), jnp.float32)
    return {"log_var": s, "adam": self.tx.init(s)}

  def weights(self, state, ctx):
    s, present = state["log_var"], ctx.present_T
    w = jnp.exp(-s) * base.mean_present(ctx)
    grad = present * (1.0 - jnp.exp(-s) * ctx.loss_T)  # absent tasks: no update
    updates, adam = self.tx.update(grad, state["adam"], s)
    return w, {"log_var": s + updates, "adam": adam}


@base.register("uw")
@gin.configurable("uw", module="mtl_jax.weighting")
def uw(num_tasks: int, learning_rate: float = 1e-2) -> base.Method:
  return UW(float(learning_rate))
