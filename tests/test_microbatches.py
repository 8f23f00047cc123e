"""Gradient accumulation (gin microbatches.num): N microbatches inside the jitted step give
the unsplit batch's loss and gradient at float32, for loss methods whose weights need this
batch's losses (uw: an extra forward pass) or not (equal), mixed and task-grouped layouts;
refused combinations say so in one line."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import KINDS, NUM_CLASSES, TINY, fixed_batch
from mtl_jax.scale import microbatch, partitioning
from mtl_jax import weighting
from mtl_jax.models.multitask import build_model
from mtl_jax.step.steps import Steps

B, L = 24, 12
CFG = dataclasses.replace(TINY, num_layers=1)  # one layer: accumulation is per step, compile time is not


def build(sharing="hard", microbatches=1, method="equal", grouped=False, tx=None):
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  return Steps(build_model(CFG, sharing, NUM_CLASSES), tx or optax.adam(3e-3), KINDS, mesh,
               partitioning.logical_axis_rules(), 0, B, L, grouped=grouped,
               weighting=weighting.build(method, len(KINDS)), microbatches=microbatches)


def grouped_batch():
  batch = fixed_batch(B, L, seed=3)
  order = np.argsort(batch["task_id"], kind="stable")  # task-major: B/T rows of every task
  return {k: v[order] for k, v in batch.items()}


def loss_and_grads(steps, state, batch):
  with jax.set_mesh(steps.mesh):
    fn = jax.jit(steps._loss_and_grads)
    loss, aux, grads, _ = fn(state.params, jax.tree.map(jnp.asarray, batch), jax.random.key(7), state.weighting,
                             state.step)
  return jax.device_get((loss, aux, grads))


@pytest.mark.parametrize("sharing,method,grouped", [("hard", "equal", False), ("soft", "uw", False),
                                                    ("soft", "equal", True)])
def test_microbatched_loss_and_gradient_equal_the_unsplit_batch(sharing, method, grouped):
  whole = build(sharing, 1, method, grouped)
  split = build(sharing, 4, method, grouped)
  state = whole.init_state()
  batch = grouped_batch() if grouped else fixed_batch(B, L, seed=3)
  loss1, aux1, grads1 = loss_and_grads(whole, state, batch)
  loss4, aux4, grads4 = loss_and_grads(split, state, batch)
  np.testing.assert_allclose(loss4, loss1, rtol=1e-6)
  np.testing.assert_allclose(aux4["task_loss"], aux1["task_loss"], rtol=1e-6)
  np.testing.assert_array_equal(aux4["task_count"], aux1["task_count"])
  np.testing.assert_allclose(aux4["task_weight"], aux1["task_weight"], rtol=1e-6)
  np.testing.assert_allclose(aux4["penalty"], aux1["penalty"], rtol=1e-5, atol=1e-9)
  flat1, flat4 = jax.tree.leaves(grads1), jax.tree.leaves(grads4)
  assert len(flat1) == len(flat4)
  scale = max(float(np.abs(g).max()) for g in flat1)
  assert scale > 0
  for g1, g4 in zip(flat1, flat4):
    np.testing.assert_allclose(g4, g1, rtol=2e-5, atol=2e-6 * scale)


def test_microbatches_split_rows_strided_and_keep_task_groups():
  batch = {"task_id": np.repeat(np.arange(3), 8), "row": np.arange(24)}
  micro = jax.device_get(microbatch.split(batch, 4))
  np.testing.assert_array_equal(micro["row"][1], np.arange(1, 24, 4))
  for m in range(4):  # every microbatch holds 2 rows of each task, task-major
    np.testing.assert_array_equal(micro["task_id"][m], np.repeat(np.arange(3), 2))


def test_microbatched_training_follows_the_unsplit_trajectory():
  # plain SGD: Adam divides by sqrt(v), which turns float noise in near-zero gradients into full steps
  whole, split = build("hard", 1, tx=optax.sgd(0.1)), build("hard", 3, tx=optax.sgd(0.1))
  batch = fixed_batch(B, L, seed=5)
  s1, s3 = whole.init_state(), split.init_state()
  for _ in range(3):
    s1, m1 = whole.run_train_step(s1, batch)
    s3, m3 = split.run_train_step(s3, batch)
    np.testing.assert_allclose(float(m3["loss"]), float(m1["loss"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(jax.device_get(s1.params)), jax.tree.leaves(jax.device_get(s3.params))):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
  assert int(s3.step) == 3


def test_microbatches_read_from_gin(clean_gin):
  import gin
  gin.parse_config("microbatches.num = 2")
  assert build("hard", None).microbatches == 2


@pytest.mark.parametrize("kwargs,message", [
    (dict(microbatches=2, method="mgda", grouped=True), "cannot be used with the gradient weighting 'mgda'"),
    (dict(microbatches=5), "does not divide the BATCH_SIZE=24"),
    (dict(microbatches=3, grouped=True), r"does not divide the rows per task \(8\)"),
    (dict(microbatches=0), "microbatches.num must be a positive int, got 0"),
])
def test_microbatches_refuse_what_cannot_be_split(kwargs, message):
  with pytest.raises(ValueError, match=message):
    build("hard", **kwargs)


def test_microbatched_run_resumes_exactly(tmp_path):
  from mtl_jax.run.checkpoints import Checkpoints
  steps = build("soft", 2)
  batches = [fixed_batch(B, L, seed=s) for s in range(4)]
  state = steps.init_state()
  for b in batches[:2]:
    state, _ = steps.run_train_step(state, b)
  ckpt = Checkpoints(tmp_path, keep=1, period=1)
  assert ckpt.save(2, state, {"batches_consumed": 2})
  ckpt.close()
  for b in batches[2:]:
    state, m = steps.run_train_step(state, b)
  ckpt = Checkpoints(tmp_path, keep=1, period=1)
  resumed, _ = ckpt.restore(2, steps.abstract_state)
  ckpt.close()
  for b in batches[2:]:
    resumed, m2 = steps.run_train_step(resumed, b)
  assert float(m2["loss"]) == float(m["loss"])  # the step is a pure function of (state, batch): bit-exact
  for a, b in zip(jax.tree.leaves(jax.device_get(state)), jax.tree.leaves(jax.device_get(resumed))):
    np.testing.assert_array_equal(a, b)
