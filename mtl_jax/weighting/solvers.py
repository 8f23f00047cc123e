"""Small fixed-iteration solvers on the T x T Gram matrix (jit- and vmap-friendly).

Every gradient method reduces to a T-dimensional problem on gram = G G^T; these solve
them with a fixed number of cheap iterations (no host round trip, no scipy in the step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normalized(gram):
  """gram / its largest eigenvalue (+ a tiny ridge): the methods here are scale-invariant in
  the weights they return (or rescale explicitly), and the solvers then use unit steps."""
  t = gram.shape[0]
  scale = jnp.maximum(jnp.linalg.eigvalsh(gram)[-1], 1e-30)
  return gram / scale + 1e-7 * jnp.eye(t, dtype=gram.dtype), scale


def project_simplex(v):
  """Euclidean projection onto {w >= 0, sum w = 1} (sort-based, Duchi et al. 2008)."""
  n = v.shape[-1]
  u = jnp.sort(v)[::-1]
  css = jnp.cumsum(u) - 1.0
  idx = jnp.arange(1, n + 1, dtype=v.dtype)
  rho = jnp.sum(u - css / idx > 0)
  theta = css[rho - 1] / rho
  return jnp.maximum(v - theta, 0.0)


def fista(grad_fn, project, x0, step, iters: int):
  """Accelerated projected gradient for a smooth convex objective with Lipschitz step."""
  def body(_, carry):
    x, y, t = carry
    x_new = project(y - step * grad_fn(y))
    t_new = (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)) / 2.0
    y_new = x_new + ((t - 1.0) / t_new) * (x_new - x)
    return x_new, y_new, t_new
  x, _, _ = jax.lax.fori_loop(0, iters, body, (x0, x0, jnp.ones((), x0.dtype)))
  return x


def pgd_backtracking(f, project, x0, iters: int, step0: float = 1.0):
  """Projected gradient with a backtracking step (for objectives without a known Lipschitz
  constant, e.g. CAGrad's norm term): halve until the sufficient-decrease test holds."""
  grad = jax.grad(f)

  def body(_, carry):
    x, step = carry
    g, fx = grad(x), f(x)

    def shrink(s):
      return s * 0.5

    def bad(s):
      x_new = project(x - s * g)
      d = x_new - x
      return (f(x_new) > fx + g @ d + (d @ d) / (2 * s)) & (s > 1e-12)

    step = jax.lax.while_loop(bad, shrink, step)
    return project(x - step * g), jnp.minimum(step * 1.5, 1e3)  # normalised problems: bounded steps
  x, _ = jax.lax.fori_loop(0, iters, body, (x0, jnp.asarray(step0, x0.dtype)))
  return x


def min_norm_simplex(gram, iters: int):
  """argmin_{w in simplex} w^T gram w (the min-norm point of the gradients' convex hull)."""
  t = gram.shape[0]
  step = 1.0 / (2.0 * jnp.linalg.eigvalsh(gram)[-1])
  return fista(lambda w: 2.0 * gram @ w, project_simplex, jnp.full((t,), 1.0 / t, gram.dtype), step, iters)
