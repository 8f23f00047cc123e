"""stch (Lin et al. 2024, smooth Tchebycheff scalarisation): minimise the smooth maximum
mu log sum_t exp(log(l_t / z_t) / mu) of the tasks' log-loss ratios to a nadir point z (the
tasks' mean losses over `warmup_steps` warm-up steps, which minimise sum_t log l_t). As a loss
weighting (weights held constant): w_t = p_t / l_t, p = softmax(log(l / z) / mu) over the
present tasks; warm-up: w_t = 1 / (T' l_t) (T' present tasks). LibMTL / the official code
multiply their loss by T on the sum-of-losses scale: the same update as ours on the mean scale.

The paper's warm-up is in epochs (ours: steps); the nadir sums and counts live in TrainState.
With warmup_steps = 0, z = 1 (raw log-losses, as torchjd without warm-up)."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base

EPS = 1e-20


class STCH(base.Method):
  def __init__(self, mu: float, warmup_steps: int):
    self.mu, self.warmup = mu, warmup_steps

  def init(self, num_tasks):
    zeros = jnp.zeros((num_tasks,), jnp.float32)
    return {"loss_sum": zeros, "loss_count": zeros, "seen": jnp.zeros((), jnp.int32)}

  def weights(self, state, ctx):
    present = ctx.present_T > 0
    loss = jnp.where(present, jnp.maximum(ctx.loss_T, 1e-8), 1.0)  # a zero loss: bounded weight
    warming = state["seen"] < self.warmup
    nadir = jnp.where(state["loss_count"] > 0, state["loss_sum"] / jnp.maximum(state["loss_count"], 1.0), 1.0)
    if self.warmup == 0:
      nadir = jnp.ones_like(nadir)
    logits = jnp.where(present, jnp.log(loss / nadir + EPS) / self.mu, -jnp.inf)
    p = jax.nn.softmax(jnp.where(present.any(), logits, 0.0))
    warm = base.mean_present(ctx) / loss
    w = jnp.where(present, jnp.where(warming, warm, p / loss), 0.0)
    add = warming & present
    new = {"loss_sum": state["loss_sum"] + jnp.where(add, ctx.loss_T, 0.0),
           "loss_count": state["loss_count"] + add.astype(jnp.float32),
           "seen": state["seen"] + warming.astype(jnp.int32)}
    return w, new


@base.register("stch")
@gin.configurable("stch", module="mtl_jax.weighting")
def stch(num_tasks: int, mu: float = 1.0, warmup_steps: int = 100) -> base.Method:
  if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not mu > 0:
    raise ValueError(f"weighting.stch.mu={mu!r} must be a number > 0 (the smoothing of the max)")
  if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
    raise ValueError(f"weighting.stch.warmup_steps={warmup_steps!r} must be an int >= 0 (steps that set the nadir)")
  return STCH(float(mu), warmup_steps)
