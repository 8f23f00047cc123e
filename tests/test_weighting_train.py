"""Weighting through the real train step (steps.Steps on the tiny model): the vectorised
per-task gradients against a per-task loop, one step of every method, exact resume of
every state-keeping method through a checkpoint, run_spec refusals and bad settings."""

import dataclasses

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import KINDS, NUM_CLASSES, TINY, fixed_batch
from mtl_jax.run import checkpoints, run_spec
from mtl_jax.scale import partitioning
from mtl_jax import weighting
from mtl_jax.models.multitask import build_model
from mtl_jax.step.steps import Steps
from mtl_jax.weighting import base

CONFIG = dataclasses.replace(TINY, num_layers=1, dropout_rate=0.0)
B, L, T = 12, 8, 3


def grouped_batch(seed=0):
  batch = fixed_batch(B, L, T, seed=seed)
  order = np.argsort(batch["task_id"], kind="stable")  # task-major: the grouped layout
  return {k: v[order] for k, v in batch.items()}


@pytest.fixture(scope="module")
def model():
  return build_model(CONFIG, "hard", NUM_CLASSES)


def make_steps(model, method, rep_grad=False, grouped=True):
  w = weighting.base._REGISTRY.get(method)(T) if method != "static" else weighting.base._REGISTRY.get(method)(T, weights=[1, 2, 3])
  w.name, w.rep_grad = method, rep_grad
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  return Steps(model, optax.adam(1e-2), KINDS, mesh, partitioning.logical_axis_rules(), 0, B, L,
               grouped=grouped, weighting=w)


def _grads(steps, params, batch, wstate):
  rng = jax.random.key(0)
  fn = jax.jit(lambda p, b, w: steps._loss_and_grads(p, b, rng, w, jnp.zeros((), jnp.int32)))
  return fn(params, batch, wstate), rng


def _task_loss(steps, params, batch, rng, t, rep=None):
  loss_T, _, penalty = steps._task_losses(params, batch, rng, False, rep=rep)
  return loss_T[t] + penalty


@pytest.mark.parametrize("rep_grad", [False, True])
def test_vectorised_per_task_gradients_match_a_loop(model, rep_grad):
  steps = make_steps(model, "mgda", rep_grad=rep_grad)
  state = steps.init_state()
  batch = jax.tree.map(jnp.asarray, grouped_batch())
  (loss, aux, grads, _), rng = _grads(steps, state.params, batch, state.weighting)
  rows = [np.flatnonzero(np.asarray(batch["task_id"]) == t) for t in range(T)]
  if not rep_grad:  # reference: T separate backward passes, each on its own task's rows
    per_task = [jax.jit(jax.grad(lambda p: _task_loss(steps, p, jax.tree.map(lambda x: x[r], batch),
                                                      jax.random.fold_in(rng, t), t)))(state.params)
                for t, r in enumerate(rows)]  # jitted one task at a time: the loop is outside any jit
    flat = np.stack([np.concatenate([np.ravel(x) for k in ("embedder", "trunk") for x in jax.tree.leaves(g[k])])
                     for g in per_task]).astype(np.float64)
  else:  # reference: d l_t / d representation of task t's own rows, one task at a time; row k
    # of every task's group is the same coordinate (LibMTL's multi-input rep_grad)
    rep0 = jnp.zeros((B, L, CONFIG.d_model))
    rep_grad_of = lambda t: jax.jit(jax.grad(lambda r: _task_loss(steps, state.params, batch, rng, t, rep=r)))
    flat = np.stack([np.ravel(rep_grad_of(t)(rep0)[r]) for t, r in enumerate(rows)]).astype(np.float64)
  gram = flat @ flat.T
  alpha = np.asarray(steps.weighting.combine(jnp.asarray(gram, jnp.float32), {}, None)[0], np.float64)
  np.testing.assert_allclose(np.asarray(aux["task_weight"]), alpha, rtol=2e-3, atol=1e-4)
  assert np.all(alpha > 1e-3) or np.any(alpha < 0.99)  # a real combination, not one task
  if rep_grad:
    expected = jax.jit(jax.grad(lambda p: sum(float(alpha[t]) * _task_loss(steps, p, batch, rng, t)
                                              for t in range(T))))(state.params)
    expected_heads = jax.jit(jax.grad(lambda p: sum(_task_loss(steps, p, batch, rng, t) for t in range(T)) / T))(
        state.params)
  else:
    expected = jax.tree.map(lambda *g: sum(float(a) * x for a, x in zip(alpha, g)), *per_task)
    expected_heads = jax.tree.map(lambda *g: sum(g) / T, *per_task)
  for key in ("embedder", "trunk"):
    for got, want in zip(jax.tree.leaves(grads[key]), jax.tree.leaves(expected[key])):
      np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-6)
  for got, want in zip(jax.tree.leaves(grads["heads"]), jax.tree.leaves(expected_heads["heads"])):
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-6)


class _Mean(base.Method):
  kind = "gradient"

  def combine(self, gram, state, ctx):
    return jnp.full((gram.shape[0],), 1.0 / gram.shape[0]), state


def test_gradient_path_with_mean_weights_is_the_equal_loss_path(model):
  equal = make_steps(model, "equal")
  mean = make_steps(model, "mgda")
  mean.weighting = _Mean()
  mean.weighting.rep_grad = False
  state = equal.init_state()
  batch = jax.tree.map(jnp.asarray, grouped_batch(1))
  (l1, _, g1, _), _ = _grads(equal, state.params, batch, {})
  (l2, _, g2, _), _ = _grads(mean, state.params, batch, {})
  np.testing.assert_allclose(l1, l2, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


ALL = [n for n in weighting.names()]


@pytest.mark.parametrize("method", ALL + ["mgda_ub"])
def test_one_train_step_of_every_method(model, method):
  name, rep = ("mgda", True) if method == "mgda_ub" else (method, False)
  steps = make_steps(model, name, rep_grad=rep)
  state = steps.init_state()
  before = [np.asarray(x) for x in jax.tree.leaves(state.params)]
  state, metrics = steps.run_train_step(state, grouped_batch())
  m = jax.device_get(metrics)
  assert bool(m["finite"]) and np.isfinite(m["loss"]) and int(state.step) == 1
  w = m["task_weight"]
  assert w.shape == (T,) and np.all(np.isfinite(w)) and w.max() > 0
  if steps.weighting.kind == "loss":  # the loss is the weighted sum of the per-task losses
    np.testing.assert_allclose(m["task_term"], (w * m["task_loss"]).sum(), rtol=1e-5)
  after = [np.asarray(x) for x in jax.tree.leaves(state.params)]
  assert sum(not np.array_equal(a, b) for a, b in zip(before, after)) == len(before)


STATEFUL = ["uw", "dwa", "famo", "gradnorm", "gradvac", "stch", "sdmgrad", "db_mtl", "moco", "excess_mtl",
            "auto_lambda"]


@pytest.mark.parametrize("method", STATEFUL)
def test_state_keeping_methods_resume_exactly_through_a_checkpoint(model, tmp_path, method):
  steps = make_steps(model, method)
  if method == "dwa":
    steps.weighting.period = 1  # windows close every step: the history is live within 4 steps
  batches = [grouped_batch(s) for s in range(4)]
  straight = steps.init_state()
  for b in batches:
    straight, _ = steps.run_train_step(straight, b)
  state = steps.init_state()
  for b in batches[:2]:
    state, _ = steps.run_train_step(state, b)
  ckpt = checkpoints.Checkpoints(tmp_path, keep=1, period=1)
  ckpt.save(2, state, {"batches_consumed": 2})
  ckpt.close()
  state, _, _ = checkpoints.Checkpoints(tmp_path).restore_latest_good(steps.abstract_state)
  assert jax.tree.structure(state.weighting) == jax.tree.structure(straight.weighting)
  for b in batches[2:]:
    state, _ = steps.run_train_step(state, b)
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(steps.init_state().weighting),
                                                      jax.tree.leaves(straight.weighting))]
  assert any(changed), "the method's state never moved"


def test_stateless_state_is_the_old_checkpoint_layout(model):
  keys = lambda s: [jax.tree_util.keystr(p[:1]) for p, _ in jax.tree_util.tree_flatten_with_path(s)[0]]
  assert set(keys(make_steps(model, "pcgrad").abstract_state)) == {".step", ".params", ".opt_state"}
  assert ".weighting" in set(keys(make_steps(model, "uw").abstract_state))


def _record(bindings):
  gin.clear_config()
  gin.parse_config(["from mtl_jax import weighting", *bindings])
  return weighting.spec_record(T)


def test_run_spec_refuses_a_resume_into_other_weighting_state(clean_gin):
  uw, equal, pcgrad = _record(["weighting.method = 'uw'"]), _record([]), _record(["weighting.method = 'pcgrad'"])
  rest = {"encoder": {}, "param_groups": {}, "param_shapes": {},
          "train_example_limit": {"limit": None, "subset_seed": None}}
  current = lambda w: {**rest, "weighting": w}
  saved_old = dict(rest)  # a run_spec.json from before weighting existed
  diffs = [d for d in run_spec.differences({**saved_old, "weighting": equal}, current(uw)) if "weighting" in d]
  assert diffs == ["weighting 'equal' -> 'uw' (they keep different state)"]
  assert not [d for d in run_spec.differences(saved_old, current(equal)) if "weighting" in d]
  assert not [d for d in run_spec.differences(saved_old, current(pcgrad)) if "weighting" in d]
  assert [d for d in run_spec.differences(saved_old, current(uw)) if "weighting" in d]


@pytest.mark.parametrize("bindings, message", [
    (["weighting.method = 'pcgard'"], "unknown weighting method 'pcgard'; available: aligned_mtl"),
    (["weighting.method = 'static'", "weighting.static.weights = [1.0, 2.0]"],
     "weighting.static.weights=[1.0, 2.0] must be 3 non-negative numbers"),
    (["weighting.method = 'uw'", "weighting.rep_grad = True"], "weighting.rep_grad=True needs a gradient method"),
    (["weighting.method = 'uw'", "losses.combine_task_losses.weighting = 'examples'"],
     "both weighting.method='uw' and the old losses.combine_task_losses.weighting"),
    (["losses.combine_task_losses.weighting = 'uniformly'"], "unknown loss weighting 'uniformly'"),
    (["weighting.method = 'dwa'", "weighting.dwa.period = 0"], "weighting.dwa.period=0 must be an int >= 1"),
])
def test_bad_settings_fail_with_one_clear_line(clean_gin, bindings, message):
  gin.parse_config(["from mtl_jax import weighting", "from mtl_jax import losses", *bindings])
  with pytest.raises(ValueError, match=None) as info:
    weighting.configured(T)
  assert message in str(info.value).splitlines()[0], str(info.value)
  assert "pcgard" not in message or "Did you mean 'pcgrad'?" in str(info.value)


def test_old_weighting_binding_still_selects_the_method(clean_gin):
  gin.parse_config(["from mtl_jax import losses", "losses.combine_task_losses.weighting = 'examples'"])
  assert weighting.configured(T).name == "examples"
  gin.clear_config()
  assert weighting.configured(T).name == "equal"


def test_gradient_method_needs_grouped_batches(model):
  with pytest.raises(ValueError, match="weighting 'pcgrad' combines per-task gradients and needs task-grouped"):
    make_steps(model, "pcgrad", grouped=False)


def test_compare_weighting_axis_names_methods():
  from mtl_jax.compare import grid
  spec = grid.Experiment(gin_files=("gin/runs/quickstart.gin",), mixtures=("quickstart",), baselines=False,
                         axes={"weighting": ["equal", "gin/weighting/pcgrad.gin"],
                               "weighting.static.weights": [[1.0, 2.0, 3.0]]})
  cells = spec.cells()
  assert [c.axes_dict["weighting"] for c in cells] == ["equal", "pcgrad"]
  assert cells[1].gin_files[-1] == "gin/weighting/pcgrad.gin" and "weighting=pcgrad" in cells[1].cell_id
  assert "--gin.weighting.static.weights=[1.0, 2.0, 3.0]" in cells[0].argv(["train"], "/tmp/x")
  with pytest.raises(ValueError, match="gin/weighting/nope.gin' not found"):
    grid.Experiment(gin_files=("gin/runs/quickstart.gin",), mixtures=("quickstart",),
                    axes={"weighting": ["nope"]}).validate()
