"""dwa (Liu et al. 2019, dynamic weight average): w_t = softmax(r_t / temperature) with
r_t = L_t(k-1) / L_t(k-2), the ratio of the task's average loss over the last two
windows of `period` steps (the paper's windows are epochs; ours are step windows).
Equal weights until two windows are complete. The history lives in TrainState."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base


class DWA(base.Method):
  def __init__(self, temperature: float, period: int):
    self.temperature, self.period = temperature, period

  def init(self, num_tasks):
    zeros = jnp.zeros((num_tasks,), jnp.float32)
    return {"sum": zeros, "count": zeros, "last": zeros, "before": zeros, "windows": jnp.zeros((), jnp.int32)}

  def weights(self, state, ctx):
    present = ctx.present_T
    ratio = state["last"] / jnp.maximum(state["before"], 1e-12)
    ready = (state["windows"] >= 2) & (present.sum() > 0)
    logits = jnp.where(present > 0, ratio / self.temperature, -jnp.inf)
    w = jnp.where(ready, jax.nn.softmax(jnp.where(ready, logits, 0.0)), base.mean_present(ctx))
    total, count = state["sum"] + ctx.loss_T * present, state["count"] + present
    close = (ctx.step + 1) % self.period == 0
    average = jnp.where(count > 0, total / jnp.maximum(count, 1.0), state["last"])
    new = {"sum": jnp.where(close, 0.0, total), "count": jnp.where(close, 0.0, count),
           "last": jnp.where(close, average, state["last"]),
           "before": jnp.where(close, state["last"], state["before"]),
           "windows": state["windows"] + close.astype(jnp.int32)}
    return w * (present > 0), new


@base.register("dwa")
@gin.configurable("dwa", module="mtl_jax.weighting")
def dwa(num_tasks: int, temperature: float = 2.0, period: int = 20) -> base.Method:
  if not isinstance(period, int) or period < 1:
    raise ValueError(f"weighting.dwa.period={period!r} must be an int >= 1 (steps per loss window)")
  if not temperature > 0:
    raise ValueError(f"weighting.dwa.temperature={temperature!r} must be > 0")
  return DWA(float(temperature), period)
