"""nash_mtl (Navon et al. 2022): the Nash bargaining solution, alpha > 0 with
(G G^T alpha)_t = 1 / alpha_t, i.e. the minimiser of the strictly convex
1/2 alpha^T M alpha - sum log alpha, found by damped Newton steps on the T x T system
(the paper uses sequential convex programs through cvxpy on the host)."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def solve(gram, iters: int):
  t = gram.shape[0]
  alpha0 = 1.0 / jnp.sqrt(jnp.maximum(jnp.diag(gram), 1e-12))

  def body(_, a):
    grad = gram @ a - 1.0 / a
    hess = gram + jnp.diag(1.0 / a ** 2)
    delta = jnp.linalg.solve(hess, grad)
    # fraction to the boundary: stay strictly positive
    limit = jnp.min(jnp.where(delta > 0, a / jnp.maximum(delta, 1e-30), jnp.inf))
    return a - jnp.minimum(1.0, 0.9 * limit) * delta

  return jax.lax.fori_loop(0, iters, body, alpha0)


class NashMTL(base.Method):
  kind = "gradient"

  def __init__(self, iters: int):
    self.iters = iters

  def combine(self, gram, state, ctx):
    g, scale = solvers.normalized(gram)
    # on gram = scale * g the solution is alpha(g) / sqrt(scale); the direction sum alpha g_t
    # is then independent of the gradients' scale, as in the paper
    return solve(g, self.iters) / jnp.sqrt(scale), state


@base.register("nash_mtl")
@gin.configurable("nash_mtl", module="mtl_jax.weighting")
def nash_mtl(num_tasks: int, iters: int = 30) -> base.Method:
  return NashMTL(int(iters))
