"""gradnorm (Chen et al. 2018): learned task weights w (sum T) pulled so that each task's
weighted gradient norm w_t ||g_t|| approaches mean_j(w_j ||g_j||) r_t^alpha, where r_t is
the task's relative inverse training rate (l_t / l_t(0), over its mean). The gradient norms
are on all shared parameters (or the representation, with rep_grad), not just the last
shared layer. w, l(0) and the inner Adam live in TrainState; the update uses w_t / T."""

import gin
import jax.numpy as jnp
import optax

from mtl_jax.weighting import base


class GradNorm(base.Method):
  kind = "gradient"

  def __init__(self, alpha: float, learning_rate: float):
    self.alpha = alpha
    self.tx = optax.adam(learning_rate)

  def init(self, num_tasks):
    w = jnp.ones((num_tasks,), jnp.float32)
    return {"w": w, "initial_loss": jnp.zeros_like(w), "started": jnp.zeros((), jnp.bool_),
            "adam": self.tx.init(w)}

  def combine(self, gram, state, ctx):
    t = gram.shape[0]
    w = state["w"]
    initial = jnp.where(state["started"], state["initial_loss"], ctx.loss_T)
    norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0))
    ratio = ctx.loss_T / jnp.maximum(initial, 1e-12)
    rate = ratio / jnp.maximum(ratio.mean(), 1e-12)
    target = (w * norms).mean() * rate ** self.alpha  # a constant in the GradNorm loss
    grad = jnp.sign(w * norms - target) * norms
    updates, adam = self.tx.update(grad, state["adam"], w)
    new_w = jnp.maximum(w + updates, 1e-4)
    new_w = new_w * t / new_w.sum()
    return w / t, {"w": new_w, "initial_loss": initial, "started": jnp.ones((), jnp.bool_), "adam": adam}


@base.register("gradnorm")
@gin.configurable("gradnorm", module="mtl_jax.weighting")
def gradnorm(num_tasks: int, alpha: float = 1.5, learning_rate: float = 0.025) -> base.Method:
  return GradNorm(float(alpha), float(learning_rate))
