"""excess_mtl (He et al. 2024, robust MTL with excess risks): task weights moved by
exponentiated gradient ascent on each task's estimated excess risk, w_t = g_t^T diag(H_t)^-1 g_t
with H_t = sqrt(sum of g_t^2 over steps + 1e-7) (a diagonal AdaGrad preconditioner), relative to
the first step's value: lambda_t <- lambda_t exp(step_size w_t / w_t(0)), renormalised to sum T;
the loss weights lambda apply to the task losses (shared update and heads): our weights are
lambda / T (LibMTL sums the losses).

The squared-gradient sums ([T, ...] like the shared parameters), lambda and w(0) live in TrainState.
A task absent from the batch adds nothing and keeps its weight."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base


class ExcessMTL(base.GradMethod):
  buffers = ("sq_sum",)

  def __init__(self, step_size: float):
    self.step_size = step_size

  def init(self, num_tasks):
    return {"lambda": jnp.ones((num_tasks,), jnp.float32), "initial": jnp.zeros((num_tasks,), jnp.float32),
            "started": jnp.zeros((), jnp.bool_)}

  def combine_grads(self, grads_T, state, ctx):
    t = ctx.loss_T.shape[0]
    present = ctx.present_T > 0
    acc = {k: jax.tree.map(lambda s, g: s + jnp.square(g.astype(jnp.float32)), state["grads"]["sq_sum"][k], grads_T[k])
           for k in grads_T}
    excess = sum(jnp.sum((g.astype(jnp.float32) ** 2 / jnp.sqrt(s + 1e-7)).reshape(t, -1), 1)
                 for g, s in zip(jax.tree.leaves(grads_T), jax.tree.leaves(acc)))
    started = state["started"]
    initial = jnp.where(started, state["initial"], excess)
    ratio = jnp.where(present & (initial > 0), excess / jnp.where(initial > 0, initial, 1.0), 0.0)
    lam = state["lambda"] * jnp.exp(jnp.where(started, self.step_size * ratio, 0.0))
    lam = lam / lam.sum() * t
    weights = lam / t
    return (base.tree_rows(weights, grads_T), weights, weights,
            {"lambda": lam, "initial": initial, "started": jnp.ones((), jnp.bool_), "grads": {"sq_sum": acc}})


@base.register("excess_mtl")
@gin.configurable("excess_mtl", module="mtl_jax.weighting")
def excess_mtl(num_tasks: int, step_size: float = 0.01) -> base.Method:
  if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not step_size > 0:
    raise ValueError(f"weighting.excess_mtl.step_size={step_size!r} must be a number > 0 (the robust step size)")
  return ExcessMTL(float(step_size))
