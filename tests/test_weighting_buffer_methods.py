"""The methods that keep buffers of every task's gradient (DB-MTL, MoCo, ExcessMTL) against numpy
re-implementations of the authors' / LibMTL's loops over three steps (float64, flattened vectors),
and their seam: [T, ...] buffers shaped and named like the shared parameters in TrainState."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import KINDS, NUM_CLASSES, TINY
from mtl_jax import weighting
from mtl_jax.models.multitask import build_model
from mtl_jax.scale import partitioning
from mtl_jax.step.steps import Steps
from mtl_jax.weighting import base

T = 3
SHAPES = {"a": (3, 2), "b": (4,)}


def tree_of(g):  # [T, 10] -> {'trunk': {'a': [T, 3, 2], 'b': [T, 4]}}
  return {"trunk": {"a": jnp.asarray(g[:, :6].reshape(T, 3, 2), jnp.float32), "b": jnp.asarray(g[:, 6:], jnp.float32)}}


def flat(tree):
  return np.concatenate([np.asarray(tree["trunk"]["a"], np.float64).reshape(T, -1),
                         np.asarray(tree["trunk"]["b"], np.float64).reshape(T, -1)], 1) if tree["trunk"]["a"].ndim == 3 \
      else np.concatenate([np.asarray(tree["trunk"]["a"]).reshape(-1), np.asarray(tree["trunk"]["b"]).reshape(-1)])


def run(name, kw, steps=3, seed=0, count=None):
  rng = np.random.default_rng(seed)
  method = base._REGISTRY.get(name)(T, **kw)
  params = {"trunk": {k: jnp.zeros(s) for k, s in SHAPES.items()}, "heads": {"w": jnp.zeros(2)}}
  state = method.init_with_params(T, params)
  assert set(state["grads"][method.buffers[0]]) == {"trunk"}  # shared parameters only
  fn = jax.jit(lambda g, s, c: method.combine_grads(g, s, c))
  out = []
  for k in range(steps):
    g = rng.normal(size=(T, 10)) * np.array([[1.0], [4.0], [0.3]])
    loss = rng.uniform(0.5, 2.0, size=T)
    cnt = np.ones(T) if count is None else np.asarray(count[k], float)
    ctx = base.Context(loss_T=jnp.asarray(loss, jnp.float32), count_T=jnp.asarray(cnt, jnp.float32),
                       rng=jax.random.key(0), step=jnp.asarray(k))
    update, head_w, alpha, state = fn(tree_of(g), state, ctx)
    out.append((g, loss, cnt, flat(update), np.asarray(head_w), state))
  return out


def test_db_mtl_matches_the_libmtl_loop():
  beta, sigma = 0.9, 0.5
  buffer = np.zeros((T, 10))
  for k, (g, loss, _, update, head_w, state) in enumerate(run("db_mtl", {"beta": beta, "beta_sigma": sigma}), 1):
    h = g / (loss[:, None] + 1e-8)  # gradients of log l_t
    buffer = h + beta / k ** sigma * (buffer - h)
    norms = np.linalg.norm(buffer, axis=1)
    want = (norms.max() / (norms + 1e-8)) @ buffer / T  # LibMTL's sum / T
    np.testing.assert_allclose(update, want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(flat(state["grads"]["ema"]), buffer, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(head_w, 1 / (T * (loss + 1e-8)), rtol=1e-6)


def test_db_mtl_absent_task_keeps_its_buffer_and_gets_no_weight():
  steps = run("db_mtl", {}, steps=2, count=[[1, 1, 1], [1, 0, 1]])
  np.testing.assert_array_equal(flat(steps[1][5]["grads"]["ema"])[1], flat(steps[0][5]["grads"]["ema"])[1])
  assert steps[1][4][1] == 0


def test_moco_matches_the_authors_loop():
  kw = dict(beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.1)
  y, lam = np.zeros((T, 10)), np.full(T, 1 / T)
  for k, (g, loss, _, update, head_w, state) in enumerate(run("moco", kw, seed=1), 1):
    gh = g / (np.linalg.norm(g, axis=1, keepdims=True) + 1e-8) * loss[:, None]
    y = y - kw["beta"] / k ** kw["beta_sigma"] * (y - gh)
    z = lam - kw["gamma"] / k ** kw["gamma_sigma"] * (y @ y.T + kw["rho"] * np.eye(T)) @ lam
    lam = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(update, y.T @ lam, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(state["lambda"], lam, rtol=2e-5)
    np.testing.assert_allclose(head_w, np.full(T, 1 / T), rtol=1e-6)


def test_excess_mtl_matches_the_libmtl_loop():
  step_size = 0.5
  sq, lam, initial = np.zeros((T, 10)), np.ones(T), None
  for g, loss, _, update, head_w, state in run("excess_mtl", {"step_size": step_size}, seed=2):
    sq = sq + g ** 2
    w = np.sum(g * (1 / np.sqrt(sq + 1e-7)) * g, 1)
    if initial is None:
      initial = w
    else:
      lam = lam * np.exp(w / initial * step_size)
      lam = lam / lam.sum() * T
    np.testing.assert_allclose(update, (lam / T) @ g, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(state["lambda"], lam, rtol=2e-5)
    np.testing.assert_allclose(head_w, lam / T, rtol=2e-5)
  assert not np.allclose(lam, 1.0)  # the weights did move


@pytest.mark.parametrize("name", ["db_mtl", "moco", "excess_mtl"])
def test_buffers_live_in_train_state_like_the_shared_params(name):
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = Steps(build_model(dataclasses.replace(TINY, num_layers=1), "hard", NUM_CLASSES), optax.adam(1e-3), KINDS,
                mesh, partitioning.logical_axis_rules(), 0, 12, 12, grouped=True, weighting=weighting.build(name, 3))
  state = steps.init_state()
  buffers = state.weighting["grads"][steps.weighting.buffers[0]]
  shared = {k: v for k, v in state.params.items() if k != "heads"}
  assert jax.tree.structure(buffers) == jax.tree.structure(shared)
  for buf, p in zip(jax.tree.leaves(buffers), jax.tree.leaves(shared)):
    assert buf.shape == (3, *p.shape) and not np.any(np.asarray(buf))
