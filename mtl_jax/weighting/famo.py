"""famo (Liu et al. 2023, fast adaptive multitask optimisation): logits xi, z = softmax(xi);
the model minimises sum_t z_t log l_t, i.e. weights c z_t / l_t with c = 1 / sum_t z_t / l_t.
After a step, xi takes an Adam step (L2 decay gamma) on J_z(xi)^T (log l_before - log l_after).

The paper re-evaluates the loss on the same batch after the update (an extra forward); we
use the next step's batch losses instead (no extra pass, noisier): the previous step's
log-losses and logits are kept in TrainState."""

import gin
import jax
import jax.numpy as jnp
import optax

from mtl_jax.weighting import base


class FAMO(base.Method):
  def __init__(self, learning_rate: float, decay: float, eps: float):
    self.tx = optax.chain(optax.add_decayed_weights(decay), optax.adam(learning_rate))
    self.eps = eps

  def init(self, num_tasks):
    xi = jnp.zeros((num_tasks,), jnp.float32)
    return {"logits": xi, "adam": self.tx.init(xi), "prev_log_loss": xi,
            "prev_present": xi, "has_prev": jnp.zeros((), jnp.bool_)}

  def weights(self, state, ctx):
    present = ctx.present_T
    log_l = jnp.log(ctx.loss_T + self.eps)
    # 1. update the logits from the loss change since the last step
    both = present * state["prev_present"]
    delta = both * (state["prev_log_loss"] - log_l)
    _, vjp = jax.vjp(jax.nn.softmax, state["logits"])
    (grad,) = vjp(delta)
    updates, adam = self.tx.update(grad, state["adam"], state["logits"])
    use = state["has_prev"]
    logits = jnp.where(use, state["logits"] + updates, state["logits"])
    adam = base.tree_where(use, adam, state["adam"])
    # 2. this step's weights from the (updated) logits, over the present tasks
    z = jax.nn.softmax(jnp.where(present > 0, logits, -jnp.inf))
    inv = z / (ctx.loss_T + self.eps)
    w = inv / jnp.maximum(inv.sum(), 1e-30)
    keep = present > 0
    new = {"logits": logits, "adam": adam, "prev_log_loss": jnp.where(keep, log_l, state["prev_log_loss"]),
           "prev_present": present, "has_prev": jnp.ones((), jnp.bool_)}
    return w, new


@base.register("famo")
@gin.configurable("famo", module="mtl_jax.weighting")
def famo(num_tasks: int, learning_rate: float = 0.025, decay: float = 1e-3, eps: float = 1e-8) -> base.Method:
  return FAMO(float(learning_rate), float(decay), float(eps))
