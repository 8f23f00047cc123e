"""The 2023-2024 methods that are not pure Gram-matrix closed forms, against numpy written from their
papers / official code: STCH (the gradient of the smooth Tchebycheff scalarisation, by central
differences), SDMGrad (its projected momentum-SGD weight update, step by step, with the state carried
over); and bad method parameters: one line naming the value. (DualProj, ConFIG and FairGrad are in
test_weighting_hard_inputs.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl_jax import train
from mtl_jax.weighting import base


def ctx(loss, count=None, step=0):
  loss = jnp.asarray(loss, jnp.float32)
  count = jnp.ones_like(loss) if count is None else jnp.asarray(count, jnp.float32)
  return base.Context(loss_T=loss, count_T=count, rng=jax.random.key(0), step=jnp.asarray(step))


def stch_objective(loss, nadir, mu):  # LibMTL / official STCH loss, divided by T (our mean scale)
  z = np.log(loss / nadir + 1e-20) / mu
  return mu * (np.log(np.sum(np.exp(z - z.max()))) + z.max())


def test_stch_warmup_nadir_then_smooth_max_gradient():
  method = base._REGISTRY.get("stch")(3, mu=0.5, warmup_steps=2)
  step = jax.jit(method.weights)
  state = method.init(3)
  warm = [np.array([1.0, 2.0, 4.0]), np.array([3.0, 2.0, 2.0])]
  for k, loss in enumerate(warm):
    w, state = step(state, ctx(loss, step=k))
    np.testing.assert_allclose(w, 1 / (3 * loss), rtol=1e-6)  # sum_t log l_t, on the mean scale
  nadir = np.mean(warm, 0)
  np.testing.assert_allclose(np.asarray(state["loss_sum"]) / np.asarray(state["loss_count"]), nadir, rtol=1e-6)
  loss = np.array([1.5, 1.0, 2.5])
  w, state = step(state, ctx(loss, step=2))
  h = 1e-6
  fd = [(stch_objective(loss + h * e, nadir, 0.5) - stch_objective(loss - h * e, nadir, 0.5)) / (2 * h)
        for e in np.eye(3)]
  np.testing.assert_allclose(w, fd, rtol=1e-4)
  assert int(state["seen"]) == 2  # the nadir is frozen after the warm-up


def test_stch_absent_task_gets_no_weight_and_no_nadir_sample():
  method = base._REGISTRY.get("stch")(3, warmup_steps=1)
  w, state = method.weights(method.init(3), ctx([1.0, 0.0, 2.0], count=[4, 0, 4]))
  np.testing.assert_allclose(w, [1 / 2, 0, 1 / 4], rtol=1e-6)  # 1 / (T' l) over the 2 present tasks
  np.testing.assert_allclose(state["loss_count"], [1, 0, 1])
  w, _ = method.weights(state, ctx([1.0, 3.0, 2.0]))
  assert np.all(np.isfinite(np.asarray(w)))


def np_project_simplex(v):
  u = np.sort(v)[::-1]
  css = np.cumsum(u)
  rho = np.nonzero(u * np.arange(1, len(v) + 1) > (css - 1))[0][-1]
  return np.maximum(v - (css[rho] - 1) / (rho + 1), 0)


def np_sdmgrad(g, w, lam, iters=20, lr=5.0, momentum=0.5):
  """The official / LibMTL loop: scaled Gram, torch SGD momentum (buffer = grad on the first step),
  projection onto the simplex after every step; update (G^T w + lam g0) / (1 + lam)."""
  gg = g @ g.T
  gg = gg / (np.mean(np.sqrt(np.diag(gg))) ** 2 + 1e-8)
  pull = gg.mean(1)
  buf = None
  for _ in range(iters):
    grad = gg @ w + lam * pull
    buf = grad if buf is None else momentum * buf + grad
    w = np_project_simplex(w - lr * buf)
  return w, (w @ g + lam * g.mean(0)) / (1 + lam)


def test_sdmgrad_matches_the_official_loop_over_two_steps():
  rng = np.random.default_rng(3)
  method = base._REGISTRY.get("sdmgrad")(4, lam=0.3)
  fn = jax.jit(lambda gram, s: method.combine(gram, s, ctx(np.ones(4))))
  state, w_ref = method.init(4), np.full(4, 0.25)
  for _ in range(2):  # the weights persist across steps (TrainState)
    g = rng.normal(size=(4, 9)) * np.array([[1.0], [3.0], [0.5], [1.0]])
    g[1] = -0.8 * g[0] + 0.3 * rng.normal(size=9)
    alpha, state = fn(jnp.asarray(g @ g.T, jnp.float32), state)
    w_ref, d_ref = np_sdmgrad(g, w_ref, 0.3)
    np.testing.assert_allclose(state["w"], w_ref, atol=2e-5)
    np.testing.assert_allclose(np.asarray(alpha, np.float64) @ g, d_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,kw,shown", [
    ("cagrad", {"c": -0.1}, "weighting.cagrad.c=-0.1"),
    ("mgda", {"iters": 0}, "weighting.mgda.iters=0"),
    ("upgrad", {"iters": 2.5}, "weighting.upgrad.iters=2.5"),
    ("dualproj", {"iters": -1}, "weighting.dualproj.iters=-1"),
    ("nash_mtl", {"iters": 0}, "weighting.nash_mtl.iters=0"),
    ("fairgrad", {"alpha": 0.0}, "weighting.fairgrad.alpha=0.0"),
    ("stch", {"mu": -1.0}, "weighting.stch.mu=-1.0"),
    ("stch", {"warmup_steps": -3}, "weighting.stch.warmup_steps=-3"),
    ("sdmgrad", {"lam": -0.5}, "weighting.sdmgrad.lam=-0.5"),
    ("gradvac", {"beta": 1.5}, "weighting.gradvac.beta=1.5"),
    ("static", {"weights": []}, "weighting.static.weights=[]"),
    ("dwa", {"period": 0}, "weighting.dwa.period=0"),
])
def test_bad_method_parameters_are_one_line_naming_the_value(name, kw, shown):
  with pytest.raises(ValueError) as err:
    base._REGISTRY.get(name)(3, **kw)
  assert shown in train.one_line(err.value)  # the binary's one line (gin's call-site lines dropped)


def test_rep_grad_with_a_gradient_buffer_method_is_one_line(clean_gin):
  import gin
  gin.bind_parameter("mtl_jax.weighting.method", "moco")
  gin.bind_parameter("mtl_jax.weighting.rep_grad", True)
  from mtl_jax import weighting
  with pytest.raises(ValueError, match="rep_grad=True is not supported by 'moco'"):
    weighting.configured(3)
