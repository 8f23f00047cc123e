"""cagrad (Liu et al. 2021, conflict-averse): the update d maximises the worst task's
improvement min_i g_i . d within a ball ||d - g0|| <= c ||g0|| around the mean gradient g0.
Dual: w = argmin_{w in simplex} g_w . g0 + c ||g0|| ||g_w||, d = g0 + c ||g0|| g_w / ||g_w||,
rescaled by 1 / (1 + c^2) as in the paper's code (torchjd does not rescale: its value is ours
times 1 + c^2).

Zero rows (solvers.live): a task with a zero gradient is left out (g0 and the simplex are over
the live tasks; weight 0). When ||g_w|| vanishes anyway (the live tasks' hull holds 0: already
Pareto-stationary) the update is g0 / (1 + c^2), the official code's limit (its g_w norm
carries a +1e-4); torchjd returns 0 there, which would stall training."""

import gin
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def solve(gram, c, iters):
  """(alpha [T], dual w [T]) on a normalised Gram matrix."""
  alive = solvers.live(gram)
  mean = solvers.mean_live(gram)
  g0_norm = jnp.sqrt(jnp.maximum(mean @ gram @ mean, 1e-30))
  radius = c * g0_norm

  def f(w):
    return w @ gram @ mean + radius * jnp.sqrt(jnp.maximum(w @ gram @ w, 1e-20))

  w = solvers.pgd_backtracking(f, lambda v: solvers.project_simplex(v, alive), mean, iters)
  gw_norm = jnp.sqrt(jnp.maximum(w @ gram @ w, 0.0))
  stationary = gw_norm <= 1e-6 * jnp.maximum(g0_norm, 1e-30) + 1e-12
  alpha = mean + jnp.where(stationary, 0.0, radius / jnp.where(stationary, 1.0, gw_norm)) * w
  return alpha / (1.0 + c ** 2), w


class CAGrad(base.Method):
  kind = "gradient"

  def __init__(self, c: float, iters: int):
    self.c, self.iters = c, iters

  def combine(self, gram, state, ctx):
    g, _ = solvers.normalized(gram)
    return solve(g, self.c, self.iters)[0], state


@base.register("cagrad")
@gin.configurable("cagrad", module="mtl_jax.weighting")
def cagrad(num_tasks: int, c: float = 0.4, iters: int = 200) -> base.Method:
  if not (isinstance(c, (int, float)) and c >= 0):
    raise ValueError(f"weighting.cagrad.c={c!r} must be a number >= 0 (0 is plain mean-gradient descent)")
  return CAGrad(float(c), solvers.check_iters("cagrad", iters))
