"""weighting.task_grads='recompute' (weighting/chunked.py): the Gram matrix from chunks of tasks and the
update as one more backward pass give what the kept [T, P] per-task gradients give. A toy least-squares
problem against a float64 numpy Gram (padding and off-diagonal blocks: T=5 in chunks of 2). Matrix-marked
(two tiny-model compiles each): every Gram-based method's real train step, keep vs recompute (1e-5), and
8 fake devices (data-parallel, FSDP) in recompute mode vs one device keeping the gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import KINDS, NUM_CLASSES, TINY, fixed_batch
from mtl_jax import weighting
from mtl_jax.models.multitask import build_model
from mtl_jax.scale import partitioning
from mtl_jax.step.steps import Steps
from mtl_jax.weighting import base, chunked

B, L, T = 12, 8, 3


def test_chunked_gram_is_the_numpy_gram_with_padding_and_cross_blocks(monkeypatch):
  rng = np.random.default_rng(0)
  tasks, rows, dim = 5, 4, 6
  groups_T = {"x": rng.normal(size=(tasks, rows, dim)).astype(np.float32),
              "y": rng.normal(size=(tasks, rows)).astype(np.float32), "weight": np.ones((tasks, rows), np.float32)}
  params = {"trunk": {"w": rng.normal(size=dim).astype(np.float32)}, "heads": {"b": np.zeros(tasks, np.float32)}}

  def objective(p, g, t):
    r = (g["x"] @ p["trunk"]["w"] + p["heads"]["b"][t] - g["y"]) * g["weight"]
    return 0.5 * jnp.mean(r ** 2) * (1.0 + t), t

  got, aux = jax.jit(lambda p, g: chunked.gram(objective, p, g, ["trunk"], tasks, chunk=2))(params, groups_T)
  x, y, w = (groups_T[k].astype(np.float64) for k in ("x", "y", "weight"))
  r = np.einsum("trd,d->tr", x, params["trunk"]["w"].astype(np.float64)) - y
  g = np.einsum("trd,tr->td", x, r) / rows * (1.0 + np.arange(tasks))[:, None]
  np.testing.assert_allclose(got, g @ g.T, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(aux, np.arange(tasks))


def _steps(method, mode, mesh=None, overrides=(), rows=B):
  w = weighting.build(method, T)
  w.task_grads = mode
  mesh = mesh or partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  cfg = dataclasses.replace(TINY, num_layers=1, dropout_rate=0.1)  # dropout on: each group keeps its rng
  return Steps(build_model(cfg, "hard", NUM_CLASSES), optax.adam(1e-2), KINDS, mesh,
               partitioning.logical_axis_rules(overrides), 0, rows, L, grouped=True, weighting=w)


def _batch(seed=0, rows=B):
  batch = fixed_batch(rows, L, T, seed=seed)
  return {k: v[np.argsort(batch["task_id"], kind="stable")] for k, v in batch.items()}


def _loss_and_grads(steps, params, batch):
  rng, step = jax.random.key(3), jnp.zeros((), jnp.int32)
  wstate = steps.weighting.init_with_params(T, params)
  with jax.set_mesh(steps.mesh):
    return jax.jit(lambda p, b: steps._loss_and_grads(p, b, rng, wstate, step))(params, steps.put_batch(batch))


def _assert_same(a, b, rtol=1e-5, atol=1e-6):
  (loss_a, aux_a, grads_a, _), (loss_b, aux_b, grads_b, _) = a, b
  np.testing.assert_allclose(loss_a, loss_b, rtol=rtol)
  np.testing.assert_allclose(aux_a["task_weight"], aux_b["task_weight"], rtol=rtol, atol=atol)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(grads_a), jax.tree.leaves(grads_b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def _check(method, monkeypatch):
  monkeypatch.setattr(chunked, "CHUNK", 2)  # T=3: chunks {0, 1} and {2, pad}: a cross block and padding
  keep = _steps(method, "keep")
  params = keep.init_state().params
  want = _loss_and_grads(keep, params, _batch())
  got = _loss_and_grads(_steps(method, "recompute"), params, _batch())
  _assert_same(got, want)
  assert np.abs(np.asarray(jax.tree.leaves(want[2])[0])).max() > 0


GRAM_METHODS = sorted(n for n in weighting.names() if n != "static" and weighting.build(n, T).kind == "gradient"
                      and not isinstance(weighting.build(n, T), base.GradMethod))


@pytest.mark.matrix
@pytest.mark.parametrize("method", GRAM_METHODS)
def test_every_gram_method_recomputed_is_kept(method, monkeypatch):
  _check(method, monkeypatch)


@pytest.mark.matrix
@pytest.mark.parametrize("mesh_name, overrides", [("data_parallel", ()), ("fsdp", (("embed", "data"),))])
@pytest.mark.parametrize("method", ["pcgrad", "upgrad"])
def test_recompute_on_8_devices_is_the_one_device_result(method, mesh_name, overrides, monkeypatch):
  monkeypatch.setattr(chunked, "CHUNK", 2)
  keep = _steps(method, "keep", rows=24)  # 24 rows: 8 devices split the batch
  params = keep.init_state().params
  want = _loss_and_grads(keep, params, _batch(1, rows=24))
  sharded = _steps(method, "recompute", partitioning.make_mesh((8, 1)), overrides, rows=24)
  got = _loss_and_grads(sharded, jax.device_put(params, sharded.state_shardings.params), _batch(1, rows=24))
  _assert_same(jax.device_get(got), want, rtol=2e-4, atol=2e-5)
