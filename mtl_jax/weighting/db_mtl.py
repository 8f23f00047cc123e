"""db_mtl (Lin et al. 2023, dual-balancing MTL): balance the loss scales with log-losses
(grad log l_t = g_t / l_t) and the gradient scales by rescaling every task's gradient EMA to the
largest norm: buffer_t <- h_t + beta_k (buffer_t - h_t), beta_k = beta / k^sigma (k = 1, 2, ...),
h_t = g_t / (l_t + 1e-8); the shared update is sum_t (max_j ||buffer_j|| / ||buffer_t||) buffer_t.

As LibMTL, whose sum of losses is our mean x T: our update is LibMTL's / T; the heads get their
log-loss gradients (weights 1 / (T (l_t + 1e-8))). The EMA buffers ([T, ...] like the shared
parameters) live in TrainState. A task absent from the batch keeps its buffer and gets weight 0."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base


class DBMTL(base.GradMethod):
  buffers = ("ema",)

  def __init__(self, beta: float, sigma: float):
    self.beta, self.sigma = beta, sigma

  def init(self, num_tasks):
    return {"count": jnp.zeros((), jnp.int32)}

  def combine_grads(self, grads_T, state, ctx):
    t = ctx.loss_T.shape[0]
    present = ctx.present_T > 0
    count = state["count"] + 1
    rate = self.beta / count.astype(jnp.float32) ** self.sigma
    inv_loss = 1.0 / (ctx.loss_T + 1e-8)

    def ema(buf, g):
      h = g * inv_loss.reshape((t,) + (1,) * (g.ndim - 1)).astype(g.dtype)
      new = h + rate * (buf - h)
      return jnp.where(present.reshape((t,) + (1,) * (g.ndim - 1)), new, buf)

    buffer = {k: jax.tree.map(ema, state["grads"]["ema"][k], grads_T[k]) for k in grads_T}
    norms = jnp.sqrt(base.tree_sq_norms(buffer))
    live = present & (norms > 0)
    top = jnp.max(jnp.where(live, norms, 0.0))
    alpha = jnp.where(live, top / (norms + 1e-8), 0.0) / t
    head_w = jnp.where(present, inv_loss, 0.0) / t
    return base.tree_rows(alpha, buffer), head_w, alpha, {"count": count, "grads": {"ema": buffer}}


@base.register("db_mtl")
@gin.configurable("db_mtl", module="mtl_jax.weighting")
def db_mtl(num_tasks: int, beta: float = 0.9, beta_sigma: float = 0.5) -> base.Method:
  if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
    raise ValueError(f"weighting.db_mtl.beta={beta!r} must be in [0, 1) (the EMA rate of the gradients)")
  if isinstance(beta_sigma, bool) or not isinstance(beta_sigma, (int, float)) or beta_sigma < 0:
    raise ValueError(f"weighting.db_mtl.beta_sigma={beta_sigma!r} must be >= 0 (the decay of the EMA rate)")
  return DBMTL(float(beta), float(beta_sigma))
