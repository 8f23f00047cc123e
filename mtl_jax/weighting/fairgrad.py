"""fairgrad (Ban & Ji 2024, fair resource allocation): alpha > 0 with
(G G^T alpha)_t = alpha_t^(-1/a), the alpha-fair allocation of the update among the tasks
(a = 1 is Nash-MTL's bargaining condition; a -> infinity approaches max-min fairness). It is the
minimiser of the strictly convex 1/2 alpha^T M alpha - sum_t h(alpha_t) with h' = x^(-1/a),
found by damped Newton steps (LibMTL and the official code use scipy least_squares on the host).

Scale: as LibMTL (which applies alpha to the SUM of the losses), alpha is the exact solution on
the raw Gram matrix (allocate). Zero rows (solvers.live): no
solution exists for a zero gradient (alpha_t -> infinity); the task is left out (weight 0)."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def allocate(gram, a: float, iters: int):
  """alpha >= 0 with (M alpha)_t = alpha_t^(-1/a) on the live tasks (0 on the dead ones).

  Solved in the task-scale-free variables y = D alpha, D = diag ||g_t||: (C y)_t = k_t y_t^(-1/a)
  with C = D^-1 M D^-1 (unit diagonal) and k_t = ||g_t||^(1/a - 1) (1 for Nash-MTL), so gradient
  norms spanning decades do not make the float32 Newton system ill-conditioned."""
  alive = solvers.live(gram)
  d = jnp.sqrt(jnp.where(alive, jnp.diag(gram), 1.0))
  c = solvers.isolate(gram / (d[:, None] * d[None, :]), alive)
  k = d ** (1.0 / a - 1.0)
  power = -1.0 / a

  def body(_, y):
    grad = c @ y - k * y ** power
    hess = c + jnp.diag((k / a) * y ** (power - 1.0))
    delta = jnp.linalg.solve(hess, grad)
    limit = jnp.min(jnp.where(delta > 0, y / jnp.maximum(delta, 1e-30), jnp.inf))  # stay > 0
    return y - jnp.minimum(1.0, 0.9 * limit) * delta

  y = jax.lax.fori_loop(0, iters, body, k ** (a / (1.0 + a)))  # y0: exact for orthogonal gradients
  return jnp.where(alive, y / d, 0.0)


class FairGrad(base.Method):
  kind = "gradient"

  def __init__(self, alpha: float, iters: int):
    self.alpha, self.iters = alpha, iters

  def combine(self, gram, state, ctx):
    return allocate(gram, self.alpha, self.iters), state


@base.register("fairgrad")
@gin.configurable("fairgrad", module="mtl_jax.weighting")
def fairgrad(num_tasks: int, alpha: float = 1.0, iters: int = 30) -> base.Method:
  if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
    raise ValueError(f"weighting.fairgrad.alpha={alpha!r} must be a number > 0 (1 is Nash-MTL's condition)")
  return FairGrad(float(alpha), solvers.check_iters("fairgrad", iters))
