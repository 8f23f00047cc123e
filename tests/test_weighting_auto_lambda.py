"""auto_lambda against a float64 numpy reference written from the paper's update (Liu et al. 2022, eqs. 2-3)
on a tiny quadratic problem, with the meta-gradient taken as the authors' code takes it (central finite
difference of the training losses along the held-out gradient, exact on a quadratic): 3 steps of lambda,
the Adam state and the model update; the held-out batch is the previous batch; bad settings in one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl_jax import weighting
from mtl_jax.weighting import auto_lambda

T, N, P = 3, 5, 4
PEN = 0.05  # a sown penalty: in the virtual step and the update, not in the held-out objective


def batches(k, seed=0):
  rng = np.random.default_rng(seed)
  return [{"A": rng.normal(size=(T, N, P)).astype(np.float32), "b": rng.normal(size=(T, N)).astype(np.float32)}
          for _ in range(k)]


def task_losses(params, batch, rng):
  r = jnp.einsum("tnp,p->tn", batch["A"], params["w"]) - batch["b"]
  loss_T = 0.5 * jnp.mean(r ** 2, axis=1) * (1.0 + jnp.arange(T))  # unequal scales
  count_T = (jnp.abs(batch["A"]).sum((1, 2)) > 0).astype(jnp.float32)  # the zero initial held batch: no task
  return loss_T * count_T, count_T, PEN * jnp.sum(params["w"] ** 2)


def np_losses(w, batch):
  A, b = batch["A"].astype(np.float64), batch["b"].astype(np.float64)
  r = np.einsum("tnp,p->tn", A, w) - b
  return 0.5 * np.mean(r ** 2, 1) * (1.0 + np.arange(T))


def np_grads(w, batch):  # [T, P]: g_t = scale_t A_t^T (A_t w - b_t) / N
  A, b = batch["A"].astype(np.float64), batch["b"].astype(np.float64)
  r = np.einsum("tnp,p->tn", A, w) - b
  return np.einsum("tnp,tn->tp", A, r) / N * (1.0 + np.arange(T))[:, None]


def reference(xs, w0, lam0, meta_lr, alpha, primary, lr):
  """The paper's update, float64: theta' = theta - alpha (sum_t lam_t g_t + grad pen);
  lam <- Adam(lam, -alpha * (L_t(theta + eps d) - L_t(theta - eps d)) / (2 eps)), d = grad_theta' sum_pri L_held;
  the update sum_t lam_t g_t + grad pen with the new lambda; then plain SGD on theta (lr) for the next step."""
  w, lam, m, v = w0.astype(np.float64), lam0.copy(), np.zeros(T), np.zeros(T)
  held, out = None, []
  for k, x in enumerate(xs):
    g = np_grads(w, x)
    if held is not None:
      ahead = w - alpha * (lam @ g + 2 * PEN * w)
      d = np_grads(ahead, held)[primary].sum(0)
      eps = 0.01 / np.linalg.norm(d)
      fd = (np_losses(w + eps * d, x) - np_losses(w - eps * d, x)) / (2 * eps)
      meta = -alpha * fd
      m, v = 0.9 * m + 0.1 * meta, 0.999 * v + 0.001 * meta ** 2
      n = k  # Adam's step count: the first meta step is at k = 1
      lam = lam - meta_lr * (m / (1 - 0.9 ** n)) / (np.sqrt(v / (1 - 0.999 ** n)) + 1e-8)
    update = lam @ g + 2 * PEN * w
    out.append((lam.copy(), update.copy()))
    w, held = w - lr * update, x
  return out


@pytest.mark.parametrize("primary", [None, [0, 2]])
def test_lambda_and_update_follow_the_papers_equations(primary):
  method = weighting.base._REGISTRY.get("auto_lambda")(T, meta_lr=0.05, virtual_lr=0.3, init=0.2, primary=primary)
  xs = batches(4)
  method.bind_batch(xs[0])
  w = jnp.asarray(np.random.default_rng(1).normal(size=P), jnp.float32)
  state = method.init_with_params(T, {"w": w})
  step = jax.jit(lambda p, b, s, k: method.step(task_losses, p, b, jax.random.key(0), s, k))
  want = reference(xs, np.asarray(w), np.full(T, 0.2), 0.05, 0.3, primary or list(range(T)), lr=0.1)
  for k, x in enumerate(xs):
    loss, aux, grads, state = step({"w": w}, x, state, jnp.asarray(k))
    lam, update = want[k]
    np.testing.assert_allclose(aux["task_weight"], lam, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grads["w"], update, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(loss, lam @ np_losses(np.asarray(w, np.float64), x) + PEN * np.sum(
        np.asarray(w, np.float64) ** 2), rtol=1e-5)
    np.testing.assert_array_equal(state["held"]["A"], x["A"])  # this batch is the next step's held-out batch
    w = w - 0.1 * grads["w"]
  assert np.abs(want[-1][0] - 0.2).min() > 1e-3  # every lambda moved: the check can fail


def test_lambda_stays_put_without_a_held_batch():
  method = weighting.base._REGISTRY.get("auto_lambda")(T, meta_lr=0.5)
  x = batches(1)[0]
  method.bind_batch(x)
  state = method.init_with_params(T, {"w": jnp.ones(P)})
  _, aux, _, state = method.step(task_losses, {"w": jnp.ones(P)}, x, jax.random.key(0), state, 0)
  np.testing.assert_array_equal(aux["task_weight"], np.full(T, 1 / T, np.float32))
  assert bool(state["has_held"])


@pytest.mark.parametrize("kwargs, message", [
    ({"meta_lr": 0.0}, "weighting.auto_lambda.meta_lr must be a number > 0, got 0.0"),
    ({"virtual_lr": -1}, "weighting.auto_lambda.virtual_lr must be a number > 0, got -1"),
    ({"init": 0}, "weighting.auto_lambda.init must be a number > 0, got 0"),
    ({"primary": [3]}, "weighting.auto_lambda.primary must be a non-empty list of task indices in [0, 3), got [3]"),
    ({"primary": []}, "got []"),
])
def test_bad_settings_name_the_value(kwargs, message):
  with pytest.raises(ValueError) as err:
    auto_lambda.auto_lambda(T, **kwargs)
  assert message in str(err.value).splitlines()[0]  # gin appends its "In call to configurable" line


def test_unbound_state_init_says_why():
  with pytest.raises(ValueError, match="needs the batch shapes"):
    auto_lambda.auto_lambda(T).init_with_params(T, {"w": jnp.ones(P)})
