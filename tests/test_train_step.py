"""The jitted train step lowers the loss on a fixed batch; the loss weighting by hand."""

import jax
import jax.numpy as jnp
import numpy as np

from helpers import fixed_batch, tiny_steps
from mtl_jax.step import losses


def test_train_step_lowers_loss_on_fixed_batch():
  steps = tiny_steps()
  state = steps.init_state()
  batch = fixed_batch()
  first = None
  for _ in range(40):
    state, metrics = steps.run_train_step(state, batch)
    first = float(metrics["loss"]) if first is None else first
  last = float(metrics["loss"])
  assert int(state.step) == 40
  assert last < 0.5 * first, (first, last)
  assert np.all(np.asarray(metrics["task_count"]) > 0)


def test_per_task_mean_and_weightings_by_hand():
  loss = jnp.array([1.0, 3.0, 2.0, 10.0])
  weight = jnp.array([1.0, 1.0, 1.0, 0.0])  # last row is padding
  task = jnp.array([0, 0, 2, 2])
  mean, count = losses.per_task_mean(loss, weight, task, num_tasks=3)
  np.testing.assert_allclose(mean, [2.0, 0.0, 2.0])  # task0 (1+3)/2, task1 absent, task2 2/1
  np.testing.assert_allclose(count, [2.0, 0.0, 1.0])
  # uniform: mean over present tasks (2 + 2) / 2; examples: (2*2 + 2*1) / 3
  assert float(losses.combine_task_losses(mean, count, "uniform")) == 2.0
  np.testing.assert_allclose(float(losses.combine_task_losses(mean, count, "examples")), 2.0)
  mean2 = jnp.array([1.0, 0.0, 4.0])
  np.testing.assert_allclose(float(losses.combine_task_losses(mean2, count, "uniform")), 2.5)
  np.testing.assert_allclose(float(losses.combine_task_losses(mean2, count, "examples")), 6.0 / 3)


def test_dropout_randomness_depends_only_on_step():
  """Same state + batch -> same update: what exact resume needs."""
  steps = tiny_steps()
  batch = fixed_batch()
  a, _ = steps.run_train_step(steps.init_state(), batch)
  b, _ = steps.run_train_step(steps.init_state(), batch)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
