"""nash_mtl (Navon et al. 2022): the Nash bargaining solution, alpha > 0 with
(G G^T alpha)_t = 1 / alpha_t, i.e. the minimiser of the strictly convex
1/2 alpha^T M alpha - sum log alpha, found by damped Newton steps on the T x T system
(fairgrad.allocate with a = 1, in task-scale-free variables)
(the paper uses sequential convex programs through cvxpy on the host). Our alpha is the
exact solution on the raw Gram matrix, not clipped: torchjd solves on G G^T / ||G G^T||_F and
clips ||d|| to max_norm = 1, so its update has our direction and norm <= 1.

Zero rows (solvers.live): (M alpha)_t = 1 / alpha_t has no solution for a zero gradient
(alpha_t -> infinity); such a task is left out (weight 0), the others bargain among themselves."""

import gin

from mtl_jax.weighting import base, fairgrad, solvers


class NashMTL(base.Method):
  kind = "gradient"

  def __init__(self, iters: int):
    self.iters = iters

  def combine(self, gram, state, ctx):
    # alpha on the raw Gram matrix; the direction sum alpha_t g_t is independent of the gradients'
    # scale (||d||^2 = alpha^T M alpha = T), as in the paper
    return fairgrad.allocate(gram, 1.0, self.iters), state


@base.register("nash_mtl")
@gin.configurable("nash_mtl", module="mtl_jax.weighting")
def nash_mtl(num_tasks: int, iters: int = 30) -> base.Method:
  return NashMTL(solvers.check_iters("nash_mtl", iters))
