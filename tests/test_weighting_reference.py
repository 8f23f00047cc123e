"""Each weighting method against an independent numpy / scipy computation on fixed task
gradients or losses (no model): the formulas, optimality conditions and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from mtl_jax import weighting
from mtl_jax.weighting import base, gradvac, pcgrad


def ctx(loss, count=None, step=0, seed=0):
  loss = jnp.asarray(loss, jnp.float32)
  count = jnp.ones_like(loss) if count is None else jnp.asarray(count, jnp.float32)
  return base.Context(loss_T=loss, count_T=count, rng=jax.random.key(seed), step=jnp.asarray(step))


def grads(seed, t=3, p=7, conflict=True):
  rng = np.random.default_rng(seed)
  g = rng.normal(size=(t, p))
  if conflict:  # make task 1 conflict with task 0
    g[1] = -0.6 * g[0] + 0.5 * rng.normal(size=p)
  return g


def alpha_of(name, g, state=None, c=None, **kw):
  method = weighting.build(name, g.shape[0]) if not kw else weighting.base._REGISTRY.get(name)(g.shape[0], **kw)
  state = method.init(g.shape[0]) if state is None else state
  a, new = jax.jit(lambda m, s, cx: method.combine(m, s, cx))(jnp.asarray(g @ g.T, jnp.float32), state,
                                                              c or ctx(np.ones(g.shape[0])))
  return np.asarray(a, np.float64), new


# ---------------- gradient methods -------------------------------------------------------
def np_pcgrad(g, perms):
  out = []
  for i in range(len(g)):
    v = g[i].copy()
    for j in perms[i]:
      if j != i and v @ g[j] < 0:
        v = v - (v @ g[j]) / (g[j] @ g[j]) * g[j]
    out.append(v)
  return np.mean(out, 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_pcgrad_projections_match_numpy(seed):
  g = grads(seed, t=4)
  c = ctx(np.ones(4), seed=seed)
  perms = np.asarray(pcgrad.orders(c.rng, 4))
  a, _ = alpha_of("pcgrad", g, c=c)
  np.testing.assert_allclose(a @ g, np_pcgrad(g, perms), rtol=1e-4, atol=1e-5)
  # two tasks, closed form: each loses its component along the other
  g2 = grads(seed, t=2)
  assert g2[0] @ g2[1] < 0
  a2, _ = alpha_of("pcgrad", g2)
  p0 = g2[0] - (g2[0] @ g2[1]) / (g2[1] @ g2[1]) * g2[1]
  p1 = g2[1] - (g2[1] @ g2[0]) / (g2[0] @ g2[0]) * g2[0]
  np.testing.assert_allclose(a2 @ g2, (p0 + p1) / 2, rtol=1e-4, atol=1e-5)


def test_pcgrad_leaves_agreeing_gradients_alone():
  g = np.abs(grads(3, conflict=False))  # all dot products positive
  a, _ = alpha_of("pcgrad", g)
  np.testing.assert_allclose(a, [1 / 3] * 3, rtol=1e-6)


def test_mgda_two_task_closed_form_and_scipy():
  g = grads(4, t=2)
  a, _ = alpha_of("mgda", g)
  gamma = np.clip((g[1] - g[0]) @ g[1] / ((g[0] - g[1]) @ (g[0] - g[1])), 0, 1)
  np.testing.assert_allclose(a, [gamma, 1 - gamma], atol=2e-4)
  g4 = grads(5, t=4, p=9)
  a4, _ = alpha_of("mgda", g4)
  m = g4 @ g4.T
  ref = optimize.minimize(lambda w: w @ m @ w, np.full(4, 0.25), method="SLSQP", bounds=[(0, 1)] * 4,
                          constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-12})
  np.testing.assert_allclose(np.linalg.norm(a4 @ g4), np.linalg.norm(ref.x @ g4), rtol=1e-3)
  assert abs(a4.sum() - 1) < 1e-5 and a4.min() >= -1e-6


def test_cagrad_matches_scipy_and_optimality():
  g, c = grads(6, t=3), 0.4
  a, _ = alpha_of("cagrad", g)
  g0 = g.mean(0)
  radius = c * np.linalg.norm(g0)
  dual = lambda w: (w @ g) @ g0 + radius * np.linalg.norm(w @ g)
  ref = optimize.minimize(dual, np.full(3, 1 / 3), method="SLSQP", bounds=[(0, 1)] * 3,
                          constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-12})
  gw = ref.x @ g
  d_ref = (g0 + radius * gw / np.linalg.norm(gw)) / (1 + c ** 2)
  d = a @ g
  np.testing.assert_allclose(d, d_ref, rtol=2e-3, atol=2e-4)
  # optimality: d (unscaled) is on the ball around g0, and no point of the ball beats its worst task
  d_un = d * (1 + c ** 2)
  np.testing.assert_allclose(np.linalg.norm(d_un - g0), radius, rtol=1e-3)
  worst = (g @ d_un).min()
  rng = np.random.default_rng(0)
  for _ in range(200):
    u = rng.normal(size=g.shape[1])
    assert (g @ (g0 + radius * u / np.linalg.norm(u))).min() <= worst + 1e-4


def test_nash_mtl_bargaining_condition():
  g = grads(7, t=4, p=9) * np.array([[1.0], [3.0], [0.2], [1.0]])
  a, _ = alpha_of("nash_mtl", g)
  m = g @ g.T
  assert a.min() > 0
  np.testing.assert_allclose((m @ a) * a, np.ones(4), rtol=1e-3)  # (G G^T alpha)_t = 1 / alpha_t


def test_imtl_g_equal_projections_and_numpy_formula():
  g = grads(8, t=3) * np.array([[1.0], [4.0], [0.5]])
  a, _ = alpha_of("imtl", g)
  d = a @ g
  u = g / np.linalg.norm(g, axis=1, keepdims=True)
  proj = u @ d
  np.testing.assert_allclose(proj, proj[0], rtol=1e-3)
  D, U = g[0] - g[1:], u[0] - u[1:]
  rest = g[0] @ U.T @ np.linalg.inv(D @ U.T)
  np.testing.assert_allclose(a, np.concatenate([[1 - rest.sum()], rest]), rtol=1e-3, atol=1e-4)


def test_upgrad_conflicts_with_no_task_and_matches_scipy():
  g = grads(9, t=3)
  a, _ = alpha_of("upgrad", g)
  d = a @ g
  assert (g @ d).min() >= -1e-4 * np.linalg.norm(g) * np.linalg.norm(d)  # non-conflicting
  m = g @ g.T
  projections = []
  for i in range(3):  # project g_i onto the dual cone: min ||G^T u||^2, u >= e_i
    lo = np.eye(3)[i]
    r = optimize.minimize(lambda u: u @ m @ u, lo + 0.1, jac=lambda u: 2 * m @ u, method="L-BFGS-B",
                          bounds=[(l, None) for l in lo], options={"ftol": 1e-14, "gtol": 1e-12})
    projections.append(r.x @ g)
  np.testing.assert_allclose(d, np.mean(projections, 0), rtol=2e-3, atol=2e-4)
  agree = np.abs(grads(1, conflict=False))
  np.testing.assert_allclose(alpha_of("upgrad", agree)[0], [1 / 3] * 3, rtol=1e-4)


def test_aligned_mtl_matches_svd():
  g = grads(10, t=3) * np.array([[1.0], [2.0], [0.3]])
  a, _ = alpha_of("aligned_mtl", g)
  u, s, vt = np.linalg.svd(g, full_matrices=False)
  aligned = s.min() * u @ vt  # orthogonal rows, all of norm sigma_min
  np.testing.assert_allclose(a @ g, aligned.mean(0), rtol=1e-3, atol=1e-4)


def test_gradvac_matches_numpy_vectors():
  g, beta = grads(11, t=3), 0.5
  target = np.array([[0, 0.3, -0.1], [0.3, 0, 0.2], [0.1, 0.4, 0]])
  c = ctx(np.ones(3), seed=2)
  perms = np.asarray(pcgrad.orders(c.rng, 3))
  out, new_target = [], target.copy()
  for i in range(3):
    v = g[i].copy()
    for j in perms[i]:
      if j == i:
        continue
      cos = v @ g[j] / (np.linalg.norm(v) * np.linalg.norm(g[j]))
      phi = new_target[i, j]
      if cos < phi:
        v = v + np.linalg.norm(v) * (phi * np.sqrt(1 - cos ** 2) - cos * np.sqrt(1 - phi ** 2)) / (
            np.linalg.norm(g[j]) * np.sqrt(1 - phi ** 2)) * g[j]
      new_target[i, j] = (1 - beta) * phi + beta * cos
    out.append(v)
  a, state = alpha_of("gradvac", g, state={"target_cos": jnp.asarray(target, jnp.float32)}, c=c, beta=beta)
  np.testing.assert_allclose(a @ g, np.mean(out, 0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(state["target_cos"], new_target, atol=1e-5)


def test_gradnorm_first_update_by_hand():
  g = grads(12, t=3) * np.array([[1.0], [5.0], [0.5]])
  loss = np.array([1.0, 2.0, 0.5])
  a, state = alpha_of("gradnorm", g, c=ctx(loss))
  np.testing.assert_allclose(a, [1 / 3] * 3, rtol=1e-6)  # w starts at 1
  norms = np.linalg.norm(g, axis=1)
  target = norms.mean() * 1.0  # first step: l / l(0) = 1 for every task
  w = 1.0 - 0.025 * np.sign(norms - target)  # Adam's first step is lr * sign(grad)
  np.testing.assert_allclose(state["w"], 3 * w / w.sum(), rtol=1e-4)
  np.testing.assert_allclose(state["initial_loss"], loss)


# ---------------- loss methods -----------------------------------------------------------
def weights_of(name, loss, state=None, count=None, step=0, seed=0, **kw):
  method = weighting.base._REGISTRY.get(name)(len(loss), **kw)
  state = method.init(len(loss)) if state is None else state
  w, new = method.weights(state, ctx(loss, count, step, seed))
  return np.asarray(w, np.float64), new


def test_equal_examples_static():
  loss, count = [1.0, 2.0, 4.0], [2.0, 0.0, 6.0]
  np.testing.assert_allclose(weights_of("equal", loss, count=count)[0], [0.5, 0, 0.5])
  np.testing.assert_allclose(weights_of("examples", loss, count=count)[0], [0.25, 0, 0.75])
  np.testing.assert_allclose(weights_of("static", loss, weights=[1, 1, 2])[0], [0.75 / 3, 0.75 / 3, 1.5 / 3])
  np.testing.assert_allclose(weights_of("static", loss, weights=[5, 5, 5])[0], weights_of("equal", loss)[0])


def test_uw_reaches_its_closed_form_optimum():
  loss = np.array([0.2, 1.0, 3.0], np.float32)
  method = weighting.base._REGISTRY.get("uw")(3, learning_rate=0.05)

  def body(state, _):
    return method.weights(state, ctx(loss))[1], None
  state, _ = jax.lax.scan(body, method.init(3), None, length=3000)
  np.testing.assert_allclose(state["log_var"], np.log(loss), atol=1e-2)  # argmin_s exp(-s) l + s = log l
  w, _ = method.weights(state, ctx(loss))
  np.testing.assert_allclose(w, 1 / (3 * loss), rtol=3e-2)


def test_dwa_weights_from_window_averages():
  method = weighting.base._REGISTRY.get("dwa")(2, temperature=2.0, period=2)
  state, seen = method.init(2), []
  history = [[1.0, 1.0], [1.0, 3.0], [0.5, 2.0], [0.5, 2.0], [0.2, 2.0]]
  for step, loss in enumerate(history):
    w, state = method.weights(state, ctx(loss, step=step))
    seen.append(np.asarray(w))
  np.testing.assert_allclose(seen[:4], [[0.5, 0.5]] * 4)  # two windows not yet complete
  r = np.array([0.5, 2.0]) / np.array([1.0, 2.0])  # window 2 mean / window 1 mean
  e = np.exp(r / 2.0)
  np.testing.assert_allclose(seen[4], e / e.sum(), rtol=1e-5)


def test_rlw_random_but_reproducible():
  a = weights_of("rlw", [1.0, 1.0, 1.0], seed=3)[0]
  b = weights_of("rlw", [1.0, 1.0, 1.0], seed=3)[0]
  c = weights_of("rlw", [1.0, 1.0, 1.0], seed=4)[0]
  np.testing.assert_array_equal(a, b)
  assert abs(a.sum() - 1) < 1e-6 and not np.allclose(a, c) and not np.allclose(a, 1 / 3)
  assert weights_of("rlw", [1.0, 1.0, 1.0], count=[1, 0, 1])[0][1] == 0


def test_gls_is_the_gradient_of_the_geometric_mean():
  loss = np.array([0.5, 2.0, 8.0])
  w = weights_of("gls", loss)[0]
  np.testing.assert_allclose(w, np.prod(loss) ** (1 / 3) / (3 * loss), rtol=1e-5)
  np.testing.assert_allclose(w @ loss, np.prod(loss) ** (1 / 3), rtol=1e-5)


def test_famo_weights_and_logit_update_by_hand():
  method = weighting.base._REGISTRY.get("famo")(3, learning_rate=0.1, decay=0.0)
  l0, l1 = np.array([1.0, 2.0, 4.0]), np.array([0.5, 1.9, 4.2])
  w0, state = method.weights(method.init(3), ctx(l0))
  np.testing.assert_allclose(w0, (1 / l0) / (1 / l0).sum(), rtol=1e-5)  # z uniform: c z / l
  w1, state = method.weights(state, ctx(l1, step=1))
  delta = np.log(l0) - np.log(l1)
  z = np.full(3, 1 / 3)
  grad = (np.diag(z) - np.outer(z, z)) @ delta  # J_softmax^T delta
  logits = -0.1 * np.sign(grad)  # Adam's first step
  np.testing.assert_allclose(state["logits"], logits, rtol=1e-4)
  zz = np.exp(logits) / np.exp(logits).sum()
  np.testing.assert_allclose(w1, (zz / l1) / (zz / l1).sum(), rtol=1e-4)


def test_the_methods_grid_lists_every_adaptive_method():
  """gin/experiments/weighting_methods.gin is the Pareto sweep through mtl-compare: a method added to
  mtl_jax/weighting/ must enter it (static / examples are fixed weights, tuned in tuned_weighting.gin)."""
  import ast
  import pathlib
  from mtl_jax import weighting
  text = (pathlib.Path(__file__).parents[1] / "gin/experiments/weighting_methods.gin").read_text()
  axes = ast.literal_eval(text.split("experiment.axes = ", 1)[1].split("\n\n", 1)[0].strip())
  listed = axes["weighting"]
  assert len(set(listed)) == len(listed)
  variants = {"mgda_ub"}  # gin/weighting/mgda_ub.gin: mgda on the shared representation (rep_grad)
  assert set(listed) == set(weighting.names()) - {"static", "examples"} | variants
  assert all((pathlib.Path(__file__).parents[1] / f"gin/weighting/{m}.gin").exists() for m in listed)
