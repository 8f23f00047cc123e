"""TAG affinity: the hook's vectorised Z equals a direct two-step computation; the hook in a real run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from mtl_jax.step import losses
from mtl_jax import train
from mtl_jax.taskemb import affinity
from tests.helpers import KINDS, fixed_batch, tiny_steps
from conftest import ONE_DEVICE


# Steps reads gin-bound settings (weighting.method): an earlier test's bindings must not apply here.
pytestmark = pytest.mark.usefixtures("clean_gin")


def _task_loss(steps, params, batch, task):
  """Mean loss of one task's rows (selected by index, not by segment sums), dropout off."""
  out = steps.model.apply({"params": params}, batch, deterministic=True)
  rows = np.flatnonzero(batch["task_id"] == task)
  return losses.example_losses(out, batch, KINDS)[rows].mean()


def _direct(steps, state, batch, update):
  params = state.params
  z = np.zeros((3, 3))
  # each task's loss (and its gradient) jitted on its own; the loops over tasks stay in Python
  loss = [jax.jit(lambda p, t=t: _task_loss(steps, p, batch, t)) for t in range(3)]
  for i in range(3):
    g = jax.jit(jax.grad(loss[i]))(params)
    if update == "sgd":
      u = jax.tree.map(lambda x: -0.05 * x, g)
    else:
      u, _ = steps.tx.update(g, state.opt_state, params)
    flat = traverse_util.flatten_dict(u, sep="/")
    u = traverse_util.unflatten_dict({p: (0 * v if p.startswith("heads/") else v) for p, v in flat.items()}, sep="/")
    moved = optax.apply_updates(params, u)
    for j in range(3):
      z[i, j] = 1 - float(loss[j](moved)) / float(loss[j](params))
  return z


class _Context:
  def __init__(self, tmp_path, steps):
    self.model_dir, self.task_names, self.steps, self.lead, self.layout = tmp_path, ["a", "b", "c"], steps, True, "mixed"


@pytest.mark.parametrize("update", ["sgd", "optimizer"])
def test_hook_affinity_equals_direct_two_step_computation(tmp_path, update):
  steps = tiny_steps(lr=3e-2)
  batch = fixed_batch()
  state = steps.init_state()
  state, _ = steps.run_train_step(state, batch)  # a non-trivial optimizer state
  hook = affinity.AffinityHook(_Context(tmp_path, steps), every=2, update=update, learning_rate=0.05)
  hook.after_step(1, state, batch)
  hook.after_step(2, state, batch)  # not a measured step (every 2 from step 1)
  want = _direct(steps, state, batch, update)
  record = json.loads((tmp_path / "affinity.json").read_text())
  assert record["measurements"] == 1 and record["tasks"] == ["a", "b", "c"] and record["step"] == 1
  np.testing.assert_allclose(np.array(record["affinity"]), want, rtol=1e-4, atol=1e-6)
  assert np.abs(want).max() > 1e-4  # the step moves the losses
  hook.after_step(3, state, batch)  # same state and batch: the mean over measurements is unchanged
  tasks, mean = affinity.read(tmp_path)
  np.testing.assert_allclose(mean, want, rtol=1e-4, atol=1e-6)


def test_absent_task_pairs_are_skipped():
  after = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  z, valid = affinity.affinity_from(after, jnp.array([2.0, 0.0]), jnp.array([5.0, 0.0]))
  np.testing.assert_array_equal(valid, [[True, False], [False, False]])
  assert float(z[0, 0]) == pytest.approx(0.5)


BASE = ["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.BATCH_SIZE=24", "--gin.TRAIN_STEPS=2",
        "--gin.trainer.train.eval_batch_size=512", ONE_DEVICE]


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_hook_in_a_training_run_writes_the_mean_and_leaves_training_unchanged(tmp_path):
  plain = train.main([*BASE, f"--gin.MODEL_DIR={tmp_path / 'plain'}"])
  assert plain == 0
  assert train.main([*BASE, f"--gin.MODEL_DIR={tmp_path / 'hooked'}", "--gin_file=gin/taskemb/affinity.gin",
                     "--gin.affinity.every=1"]) == 0
  record = json.loads((tmp_path / "hooked" / "affinity.json").read_text())
  assert record["measurements"] == 2 and record["step"] == 2 and len(record["tasks"]) == 3
  z = np.array(record["affinity"], float)
  assert z.shape == (3, 3) and np.all(np.isfinite(z)) and np.all(np.array(record["count"]) == 2)
  results = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("plain", "hooked")]
  assert results[0]["average"] == results[1]["average"]
  with pytest.raises(ValueError, match="affinity.every must be an int >= 1"):
    affinity.AffinityHook(_Context(tmp_path, None), every=0)


def test_task_major_groups_hold_each_tasks_rows_in_order_with_weightless_padding():
  task_id = np.array([2, 0, 2, 2, 1, 2, 0, 2], np.int32)
  batch = {"task_id": task_id, "weight": np.ones(8, np.float32), "input_ids": np.arange(8)[:, None] * 10}
  cap = affinity.capacity(np.bincount(task_id, minlength=4), 8)
  assert cap == 8  # 5 rows of task 2 -> next power of two, at most the batch
  out = jax.device_get(affinity.task_major(batch, 4, cap))
  for t in range(4):
    rows = np.flatnonzero(task_id == t)
    group = slice(t * cap, (t + 1) * cap)
    np.testing.assert_array_equal(out["input_ids"][group][:len(rows), 0], rows * 10)
    np.testing.assert_array_equal(out["weight"][group], (np.arange(cap) < len(rows)).astype(np.float32))
    np.testing.assert_array_equal(out["task_id"][group], t)
  assert affinity.capacity(np.array([4, 4, 4]), 12) == 4  # the grouped layout: exact, no padding
  assert affinity.capacity(np.array([3, 1, 0]), 12) == 4


def test_skewed_batch_with_an_absent_task_matches_the_direct_computation(tmp_path):
  steps = tiny_steps(lr=3e-2)
  batch = fixed_batch()
  batch["task_id"] = np.array([0] * 11 + [2] * 5, np.int32)[np.random.default_rng(1).permutation(16)]
  state = steps.init_state()
  hook = affinity.AffinityHook(_Context(tmp_path, steps), every=1, update="sgd", learning_rate=0.05)
  hook.after_step(1, state, batch)
  z = np.array(json.loads((tmp_path / "affinity.json").read_text())["affinity"], dtype=float)
  params = state.params
  loss = {t: jax.jit(lambda p, t=t: _task_loss(steps, p, batch, t)) for t in (0, 2)}
  for i in (0, 2):
    g = jax.jit(jax.grad(loss[i]))(params)
    flat = traverse_util.flatten_dict(g, sep="/")
    u = traverse_util.unflatten_dict({p: (0 * v if p.startswith("heads/") else -0.05 * v) for p, v in flat.items()},
                                     sep="/")
    moved = optax.apply_updates(params, u)
    for j in (0, 2):
      want = 1 - float(loss[j](moved)) / float(loss[j](params))
      assert z[i, j] == pytest.approx(want, rel=1e-4, abs=1e-6)
  assert np.isnan(z[1]).all() and np.isnan(z[:, 1]).all()  # task 1 had no rows: never measured
