"""Every gradient method on hard task Jacobians against float64 numpy / scipy references written
from the papers: torchjd's published example, nearly parallel (ill-conditioned) gradients, gradients
of very different norms, and a zero row (a task absent from the batch or a dead head).

Conventions (ours vs torchjd, stated where they differ): weights are on the 'mean over the live
tasks' scale; a task whose gradient is exactly zero is left out (weight 0, means over the others:
solvers.live). PCGrad and ConFIG: torchjd sums (x T); CAGrad: ours is rescaled by 1 / (1 + c^2)
as the paper's code; Nash-MTL: torchjd clips ||d|| to 1; UPGrad and DualProj: torchjd adds a 1e-4
ridge (its published values move in the 4th digit)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from mtl_jax.weighting import base, pcgrad

J = np.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])  # torchjd's documentation example


@functools.lru_cache(maxsize=None)
def _combine(name, kw, t):
  method = base._REGISTRY.get(name)(t, **dict(kw))
  return method, jax.jit(lambda gram, state, ctx: method.combine(gram, state, ctx))


def ctx_of(t, seed=0):
  return base.Context(loss_T=jnp.ones((t,)), count_T=jnp.ones((t,)), rng=jax.random.key(seed), step=jnp.asarray(0))


def alpha_of(name, g, seed=0, state=None, **kw):
  t = g.shape[0]
  method, fn = _combine(name, tuple(sorted(kw.items())), t)
  a, new = fn(jnp.asarray(g @ g.T, jnp.float32), method.init(t) if state is None else state, ctx_of(t, seed))
  return np.asarray(a, np.float64), new


# ---------------- float64 references from the papers ------------------------------------
def faces(t, empty):
  return (np.array([(k >> i) & 1 for i in range(t)], bool) for k in range(0 if empty else 1, 2 ** t))


def exact_qp(m, lo=None):
  """min w^T m w over the simplex (lo None) or the box w >= lo, EXACTLY: every face's KKT system
  in float64 (2^T - 1 faces, T <= 6), keeping the feasible face optima whose multipliers are
  >= 0; the smallest objective wins (the problems are convex: any KKT point is optimal)."""
  t, best = len(m), None
  for free in faces(t, empty=lo is not None):
    f = np.flatnonzero(free)
    if lo is None:  # [m_FF 1; 1^T 0] [w_F; -lam] = [0; 1]
      kkt = np.block([[m[np.ix_(f, f)], np.ones((len(f), 1))], [np.ones((1, len(f))), np.zeros((1, 1))]])
      sol = np.linalg.lstsq(kkt, np.r_[np.zeros(len(f)), 1.0], rcond=None)[0]
      w = np.zeros(t)
      w[f] = sol[:-1]
      ok = w.min() >= -1e-12 and np.all(m @ w - w @ m @ w >= -1e-9 * np.abs(m).max())
    else:
      w = lo.astype(float).copy()
      rest = ~free
      if len(f):
        w[f] = np.linalg.lstsq(m[np.ix_(f, f)], -m[np.ix_(f, np.flatnonzero(rest))] @ lo[rest], rcond=None)[0]
      ok = np.all(w >= lo - 1e-12) and np.all((m @ w)[rest] >= -1e-9 * np.abs(m).max())
    if ok and (best is None or w @ m @ w < best @ m @ best):
      best = w
  return best


def simplex_min(f, t, x0=None):
  r = optimize.minimize(f, np.full(t, 1 / t) if x0 is None else x0, method="SLSQP", bounds=[(0, 1)] * t,
                        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-15, "maxiter": 1000})
  return r.x


def ref_mgda(g):  # the min-norm point of the gradients' convex hull (Sener & Koltun 2018)
  return exact_qp(g @ g.T) @ g


def box_qp(m, lo):
  return exact_qp(m, lo)


def ref_upgrad(g):  # mean of each gradient's projection onto the dual cone (Quinton & Rey 2024)
  m = g @ g.T
  return np.mean([box_qp(m, np.eye(len(g))[i]) @ g for i in range(len(g))], 0)


def ref_dualproj(g):  # the mean projected onto the dual cone (GEM eq. 11)
  m = g @ g.T
  return box_qp(m, np.full(len(g), 1 / len(g))) @ g


def ref_pcgrad(g, perms):
  out = []
  for i in range(len(g)):
    v = g[i].copy()
    for j in perms[i]:
      if j != i and v @ g[j] < 0:
        v = v - (v @ g[j]) / (g[j] @ g[j]) * g[j]
    out.append(v)
  return np.mean(out, 0)


def ref_cagrad(g, c):
  g0 = g.mean(0)
  radius = c * np.linalg.norm(g0)
  w = simplex_min(lambda w: (w @ g) @ g0 + radius * np.linalg.norm(w @ g), len(g))
  gw = w @ g
  return (g0 + radius * gw / np.linalg.norm(gw)) / (1 + c ** 2)


def ref_imtl(g):  # the paper's closed form: alpha_{2:T} = g_1 U^T (D U^T)^{-1}
  u = g / np.linalg.norm(g, axis=1, keepdims=True)
  D, U = g[0] - g[1:], u[0] - u[1:]
  rest = g[0] @ U.T @ np.linalg.inv(D @ U.T)
  return np.concatenate([[1 - rest.sum()], rest]) @ g


def ref_aligned(g):  # sigma_min U V^T of the thin SVD (rank cut at max x T x eps), mean of its rows
  u, s, vt = np.linalg.svd(g, full_matrices=False)
  keep = s ** 2 > (s ** 2).max() * len(g) * np.finfo(np.float64).eps
  return (s[keep].min() * u[:, keep] @ vt[keep]).mean(0)


def ref_fair(g, a):  # LibMTL / the official code: least squares on M x = x^(-1/a), x >= 0
  m = g @ g.T
  r = optimize.least_squares(lambda x: m @ x - x ** (-1 / a), np.ones(len(g)) / len(g), bounds=(0, np.inf),
                             xtol=1e-15, ftol=1e-15, gtol=1e-15)
  return r.x @ g


def ref_config(g):  # u = pinv(units) 1, normalised; d = mean of the projections x u
  units = g / np.linalg.norm(g, axis=1, keepdims=True)
  u = np.linalg.pinv(units) @ np.ones(len(g))
  u /= np.linalg.norm(u)
  return (g @ u).mean() * u


def ref_gradvac(g, perms, target, beta):
  out = []
  for i in range(len(g)):
    v = g[i].copy()
    for j in perms[i]:
      if j == i or not (g[i] @ g[i] > 0 and g[j] @ g[j] > 0):  # a zero row neither gives nor takes
        continue
      cos = v @ g[j] / (np.linalg.norm(v) * np.linalg.norm(g[j]))
      phi = target[i, j]
      if cos < phi:
        v = v + np.linalg.norm(v) * (phi * np.sqrt(1 - cos ** 2) - cos * np.sqrt(1 - phi ** 2)) / (
            np.linalg.norm(g[j]) * np.sqrt(1 - phi ** 2)) * g[j]
    out.append(v)
  return np.mean(out, 0)


REFS = {  # name -> (kwargs, reference(g, seed))
    "mgda": ({}, lambda g, s: ref_mgda(g)),
    "upgrad": ({}, lambda g, s: ref_upgrad(g)),
    "dualproj": ({}, lambda g, s: ref_dualproj(g)),
    "pcgrad": ({}, lambda g, s: ref_pcgrad(g, np.asarray(pcgrad.orders(ctx_of(len(g), s).rng, len(g))))),
    "cagrad": ((("c", 0.5),), lambda g, s: ref_cagrad(g, 0.5)),
    "imtl": ({}, lambda g, s: ref_imtl(g)),
    "aligned_mtl": ({}, lambda g, s: ref_aligned(g)),
    "nash_mtl": ({}, lambda g, s: ref_fair(g, 1.0)),
    "fairgrad": ((("alpha", 2.0),), lambda g, s: ref_fair(g, 2.0)),
    "config": ({}, lambda g, s: ref_config(g)),
    "gradvac": ((("beta", 0.5),), lambda g, s: ref_gradvac(g, np.asarray(pcgrad.orders(ctx_of(len(g), s).rng, len(g))),
                                                            np.zeros((len(g), len(g))), 0.5)),
}


# ---------------- torchjd's published example ---------------------------------------------
TORCHJD = {  # torchjd value, our convention's factor (ours x factor = torchjd), tolerance
    "upgrad": ({}, [0.2929, 1.9004, 1.9004], 1.0, 1e-3),      # exact vs torchjd's 1e-4 ridge: 0.2924
    "mgda": ({}, [0.0, 1.0, 1.0], 1.0, 1e-4),
    "pcgrad": ({}, [0.5848, 3.8012, 3.8012], 2.0, 1e-4),      # torchjd sums the T = 2 projections
    "cagrad": ({"c": 0.5}, [0.1835, 1.2041, 1.2041], 1.25, 1e-4),  # ours x (1 + c^2)
    "imtl": ({}, [0.0767, 1.0, 1.0], 1.0, 1e-4),
    "aligned_mtl": ({}, [0.2133, 0.9673, 0.9673], 1.0, 1e-4),
    "nash_mtl": ({}, [0.0542, 0.7061, 0.7061], None, 1e-4),   # torchjd clips ||d|| to 1: compare d / ||d||
    "dualproj": ({}, [0.5563, 1.1109, 1.1109], 1.0, 1e-3),    # exact [0.5556, 1.1111, 1.1111] vs its ridge
    "config": ({}, [0.1588, 2.0706, 2.0706], 2.0, 1e-4),      # torchjd: sum of the projections
}


@pytest.mark.parametrize("name", sorted(TORCHJD))
def test_torchjd_published_example(name):
  kw, want, factor, tol = TORCHJD[name]
  d = alpha_of(name, J, **kw)[0] @ J
  got = d / np.linalg.norm(d) if factor is None else d * factor
  np.testing.assert_allclose(got, want, atol=tol + 5e-5)  # torchjd prints 4 decimals


def test_exact_values_behind_the_torchjd_ridges():
  """UPGrad and DualProj without torchjd's ridge, by hand: the conflicting g_1 = [-4, 1, 1] loses
  its component along g_2 (and vice versa); DualProj moves the mean [1, 1, 1] off g_1."""
  g1, g2 = J
  p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
  p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
  np.testing.assert_allclose(alpha_of("upgrad", J)[0] @ J, (p1 + p2) / 2, rtol=2e-4, atol=2e-5)
  mean = J.mean(0)
  np.testing.assert_allclose(alpha_of("dualproj", J)[0] @ J, mean - (g1 @ mean) / (g1 @ g1) * g1, rtol=2e-4, atol=2e-5)


# ---------------- hard inputs ---------------------------------------------------------------
def nearly_parallel(t, seed=0, spread=0.045, p=10):
  rng = np.random.default_rng(seed)
  return rng.normal(size=p) + spread * rng.normal(size=(t, p))  # pairwise cosines ~0.995-0.999


def mixed_scales(t, seed=1, p=10):
  rng = np.random.default_rng(seed)
  g = rng.normal(size=(t, p))
  g[1] = -0.7 * g[0] + 0.3 * rng.normal(size=p)  # a conflict
  # norms over 2 decades; at 3 the smallest eigenvalue (~1e-6 max) is at float32's rounding floor
  # (max x T x eps), where Aligned-MTL, a function of that eigenvalue, is not defined in float32
  return g * np.logspace(-1, 1, t)[:, None]


def with_zero_row(g, row=2):
  g = g.copy()
  g[row] = 0.0
  return g


def close(d, ref, rtol):
  """||d - ref|| <= rtol ||ref||: the update's direction and norm, not its weights (which a
  rank-deficient Gram matrix does not determine)."""
  err = np.linalg.norm(d - ref) / np.linalg.norm(ref)
  assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}: got {d}, want {ref}"


# float32 against float64: CAGrad's projected gradient (200 steps) is the loosest; the QPs (FISTA +
# active set), the closed forms and the Newton solves are exact up to float32 rounding
RTOL = {"mgda": 2e-3, "upgrad": 2e-3, "dualproj": 2e-3, "cagrad": 5e-3, "pcgrad": 1e-4, "gradvac": 1e-4,
        "imtl": 2e-3, "aligned_mtl": 2e-3, "nash_mtl": 1e-4, "fairgrad": 1e-4, "config": 2e-3}


@pytest.mark.parametrize("name", sorted(REFS))
def test_ill_conditioned_and_mixed_scale_jacobians(name):
  kw, ref = REFS[name]
  for g in (nearly_parallel(5), mixed_scales(5)):
    close(alpha_of(name, g, **dict(kw))[0] @ g, ref(g, 0), RTOL[name])


@pytest.mark.parametrize("name", sorted(REFS))
def test_zero_row_is_left_out(name):
  """A zero gradient row gets weight 0 and the others get the method's answer on the other rows."""
  kw, ref = REFS[name]
  g = with_zero_row(mixed_scales(5))
  a, _ = alpha_of(name, g, **dict(kw))
  assert np.all(np.isfinite(a)) and a[2] == 0.0
  live = np.delete(g, 2, 0)
  if name in ("pcgrad", "gradvac"):  # their random orders are drawn for all T: the reference keeps the row
    want = ref(g, 0) * 5 / 4  # the zero row's projection is 0; the mean is over the 4 live tasks
  else:
    want = ref(live, 0)
  close(a @ g, want, RTOL[name])


def test_aligned_mtl_keeps_every_eigenvalue_above_the_rounding_floor():
  """The issue's case: 8 nearly parallel gradients (cosines ~0.998-0.999): the old cut
  (max x T x 1e-6) dropped eigenvalues and gave a several times too large update."""
  g = nearly_parallel(8, spread=0.03)
  lam = np.linalg.eigvalsh(g @ g.T)
  assert (lam / lam.max() < 8e-6).sum() >= 1  # the old cut would drop these
  # the smallest eigenvalue, ~5e-6 max, carries float32's ~1e-7 max rounding: ~0.3% in the update
  close(alpha_of("aligned_mtl", g)[0] @ g, ref_aligned(g), 5e-3)
  close(alpha_of("imtl", g)[0] @ g, ref_imtl(g), 5e-3)


def test_imtl_with_a_zero_row_does_not_stall():
  g = with_zero_row(nearly_parallel(5))
  d = alpha_of("imtl", g)[0] @ g
  live = np.delete(g, 2, 0)
  assert np.linalg.norm(d) > 0.5 * np.linalg.norm(live.mean(0))  # was ~1e-3 of normal
  np.testing.assert_allclose((live / np.linalg.norm(live, axis=1, keepdims=True)) @ d,
                             np.full(4, (live[0] / np.linalg.norm(live[0])) @ d), rtol=2e-3)  # equal projections


def test_cagrad_when_the_live_hull_holds_zero():
  """Opposite gradients: ||g_w|| = 0 at the dual optimum. Ours: g0 / (1 + c^2), the official code's
  limit (torchjd returns 0 here)."""
  g = np.array([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
  a, _ = alpha_of("cagrad", g, c=0.5)
  assert a[2] == 0.0
  np.testing.assert_allclose(a @ g, g[:2].mean(0) / 1.25, atol=1e-6)


def test_no_gradient_at_all_gives_a_finite_zero_update():
  g = np.zeros((5, 4))  # T = 5: the compiled combines of the tests above
  for name, (kw, _) in REFS.items():
    a, _ = alpha_of(name, g, **dict(kw))
    assert np.all(np.isfinite(a)), name
  for name in REFS:
    assert np.all(alpha_of(name, g, **dict(REFS[name][0]))[0] == 0), name


def test_gradnorm_with_a_zero_row_stays_finite():
  g = with_zero_row(mixed_scales(4))
  a, state = alpha_of("gradnorm", g)
  assert np.all(np.isfinite(a)) and all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state))
