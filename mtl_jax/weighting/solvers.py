"""Small fixed-iteration solvers on the T x T Gram matrix (jit- and vmap-friendly).

Every gradient method reduces to a T-dimensional problem on gram = G G^T; these solve
them with a fixed number of cheap iterations (no host round trip, no scipy in the step):
FISTA finds a QP's face and an active-set pass makes it exact; the closed forms use the exact
pseudo-inverse (rank cut max(lambda) x T x eps, no ridges). Zero gradient rows: `live`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normalized(gram):
  """gram / its largest eigenvalue, with no ridge (a 1e-7 ridge moved MGDA's min-norm point by
  ~1% when gradient norms span 2 decades): the methods here are scale-invariant in the weights
  they return (or rescale explicitly), and the solvers then use unit steps."""
  scale = jnp.maximum(jnp.linalg.eigvalsh(gram)[-1], 1e-30)
  return gram / scale, scale


def check_iters(name: str, iters) -> int:
  """A solver's iteration count, or one line naming the bad value."""
  if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
    raise ValueError(f"weighting.{name}.iters={iters!r} must be an int >= 1 (solver iterations)")
  return iters


def live(gram):
  """[T] bool: the tasks whose shared gradient is not exactly zero. The convention of every
  gradient method here: a zero row (a task absent from the batch, a dead head) is left out of
  the problem, gets weight 0, and 'mean' means over the live tasks (as base.mean_present)."""
  return jnp.diag(gram) > 0


def mean_live(gram):
  """Equal weights over the live tasks (all zero when no task has a gradient)."""
  alive = live(gram).astype(gram.dtype)
  return alive / jnp.maximum(alive.sum(), 1.0)


def isolate(gram, alive):
  """gram with the dead rows/columns replaced by the identity's: a dead task becomes an
  independent unit-norm task, so a solver's equations stay regular; zero its weight after."""
  both = alive[:, None] & alive[None, :]
  return jnp.where(both, gram, jnp.eye(gram.shape[0], dtype=gram.dtype))


def eig_cut(gram):
  """(eigenvalues, eigenvectors, keep) of a PSD Gram matrix, keeping the eigenvalues above
  max(lambda) * T * machine epsilon: the numerical rank, as the official Aligned-MTL code,
  numpy's matrix_rank and torchjd (anything smaller is rounding noise of the Gram entries)."""
  lam, vec = jnp.linalg.eigh(gram)
  tol = lam[-1] * gram.shape[0] * jnp.finfo(gram.dtype).eps
  return lam, vec, lam > jnp.maximum(tol, 0.0)


def pinv_psd(gram):
  """The exact Moore-Penrose pseudo-inverse of a PSD Gram matrix (rank cut as eig_cut; no ridge)."""
  lam, vec, keep = eig_cut(gram)
  inv = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
  return (vec * inv) @ vec.T


def project_simplex(v, mask=None):
  """Euclidean projection onto {w >= 0, sum w = 1} (sort-based, Duchi et al. 2008); with a
  bool `mask`, onto the face where the masked-out entries are 0."""
  n = v.shape[-1]
  if mask is not None:
    v = jnp.where(mask, v, -1e30)
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


def min_norm_simplex(gram, iters: int, mask=None):
  """argmin_{w in simplex} w^T gram w (the min-norm point of the gradients' convex hull);
  with `mask`, over the masked-in tasks only. FISTA finds the face, the active set makes it exact
  (FISTA alone is off by 15-30% in ||d|| after 200 steps when gradient norms span 2 decades)."""
  t = gram.shape[0]
  step = 1.0 / (2.0 * jnp.maximum(jnp.linalg.eigvalsh(gram)[-1], 1e-30))
  mask = jnp.ones((t,), bool) if mask is None else mask
  start = (mask / jnp.maximum(mask.sum(), 1)).astype(gram.dtype)
  w = fista(lambda w: 2.0 * gram @ w, lambda v: project_simplex(v, mask), start, step, iters)
  return simplex_qp(gram, mask, w, 2 * t + 2)


def dual_cone(gram, u, iters: int):
  """Weights of the projection of G^T u onto the dual cone {d : G d >= 0}: argmin_{w >= u}
  w^T gram w (Quinton & Rey 2024, Prop. 1), by FISTA on w = u + v, v >= 0, made exact by
  the active set (box_qp)."""
  step = 1.0 / (2.0 * jnp.maximum(jnp.linalg.eigvalsh(gram)[-1], 1e-30))
  v = fista(lambda v: 2.0 * gram @ (u + v), lambda v: jnp.maximum(v, 0.0), jnp.zeros_like(u), step, iters)
  return box_qp(gram, u, u + v, 2 * gram.shape[0] + 2)


def _face_box(gram, lo, free):
  """argmin w^T gram w on the face {w_i = lo_i off `free`} (exact; pseudo-inverse on the free block)."""
  both = free[:, None] & free[None, :]
  a = jnp.where(both, gram, 0.0) + jnp.diag((~free).astype(gram.dtype))
  fixed = jnp.where(free, 0.0, lo)
  b = jnp.where(free, -(gram @ fixed), lo)
  return pinv_psd(a) @ b


def _face_simplex(gram, mask, free):
  """argmin w^T gram w on the face {sum w = 1, w_i = 0 off `free`}: the KKT system, by lstsq."""
  t = gram.shape[0]
  both = free[:, None] & free[None, :]
  ones = free.astype(gram.dtype)
  top = jnp.concatenate([jnp.where(both, gram, 0.0) + jnp.diag((~free).astype(gram.dtype)), ones[:, None]], 1)
  kkt = jnp.concatenate([top, jnp.concatenate([ones, jnp.zeros((1,), gram.dtype)])[None]], 0)
  rhs = jnp.concatenate([jnp.zeros((t,), gram.dtype), jnp.ones((1,), gram.dtype)])
  return jnp.linalg.lstsq(kkt, rhs)[0][:t]


def active_set(gram, w, lo, free_of, face, multiplier, rounds: int):
  """Primal active-set refinement of an approximate QP solution (min w^T gram w over a box or
  a simplex): on the guessed face, jump to the face's exact optimum, stopping at the first bound
  it would cross (which leaves the face); at a face optimum, free the bound with the most
  negative multiplier. Exact once the face is right; from a FISTA start that takes few rounds.
  A fixed number of rounds (jit-friendly); a round with nothing to do leaves w unchanged."""
  scale = jnp.maximum(jnp.max(jnp.diag(gram)), 1e-30)

  def body(_, carry):
    w, free = carry
    target = face(free)
    p = target - w
    block = free & (p < 0)
    ratio = jnp.where(block, (w - lo) / jnp.where(block, -p, 1.0), jnp.inf)
    step = jnp.clip(jnp.min(ratio), 0.0, 1.0)
    w = jnp.where(free, w + step * p, lo)
    w = jnp.maximum(w, lo)
    hit = block & (ratio <= step) & (step < 1.0)
    mu = jnp.where(free, jnp.inf, multiplier(w))
    add = (step >= 1.0) & (jnp.min(mu) < -1e-6 * scale)
    grow = jnp.arange(w.shape[0]) == jnp.argmin(mu)
    free = (free & ~hit) | (add & grow)
    return w, free

  w0 = jnp.where(free_of(w), w, lo)
  w, _ = jax.lax.fori_loop(0, rounds, body, (w0, free_of(w)))
  return w


def box_qp(gram, lo, w, rounds: int):
  """argmin_{w >= lo} w^T gram w, refined exactly from the approximate `w` (active_set)."""
  tol = 1e-5 * jnp.maximum(jnp.max(jnp.abs(w)), 1.0)
  return active_set(gram, w, lo, lambda w: w > lo + tol, lambda free: _face_box(gram, lo, free),
                    lambda w: 2.0 * gram @ w, rounds)


def simplex_qp(gram, mask, w, rounds: int):
  """argmin_{w in simplex, w = 0 off mask} w^T gram w, refined exactly from `w` (active_set)."""
  lo = jnp.zeros_like(w)
  return active_set(gram, w, lo, lambda w: mask & (w > 1e-5), lambda free: _face_simplex(gram, mask, free),
                    lambda w: jnp.where(mask, 2.0 * (gram @ w - w @ gram @ w), jnp.inf), rounds)
