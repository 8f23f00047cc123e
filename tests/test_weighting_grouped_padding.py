"""A task-grouped batch whose BATCH_SIZE the task count does not divide is padded (weight-0 rows)
instead of refused, and a gradient method's step on it equals the per-task gradients of the real
rows alone (the padding counts nowhere)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import KINDS, NUM_CLASSES, TINY, fixed_batch
from mtl_jax import weighting
from mtl_jax.data.word_vocab import WordVocabulary
from mtl_jax.input import input_pipeline as ip
from mtl_jax.input import mixing
from mtl_jax.models.multitask import build_model
from mtl_jax.scale import partitioning
from mtl_jax.step.steps import Steps
from tasks import registration

VOCAB = WordVocabulary(200)
NAMES = ("padtoy_a", "padtoy_b", "padtoy_c")
LENGTHS = {"inputs": 8}


@pytest.fixture(scope="module")
def toy():
  for t, name in enumerate(NAMES):
    registration.add_task(name, kind="classification", vocabulary=VOCAB, label_names=("a", "b"),
                          examples_fn=lambda split, t=t: [{"text": f"w{t} w{i}", "label": i % 2} for i in range(50)])
  registration.add_mixture("padtoy", [(n, mixing.proportional()) for n in NAMES])
  return ip.get_provider("padtoy")


def test_grouped_rows_split_the_remainder():
  assert ip.grouped_rows(12, 3) == (4, [4, 4, 4])
  assert ip.grouped_rows(32, 3) == (11, [11, 11, 10])  # the quickstart: 32 real rows in 3 groups of 11
  assert ip.grouped_rows(10, 3) == (4, [4, 3, 3])
  assert ip.grouped_rows(2, 3) == (1, [1, 1, 0])


@pytest.mark.parametrize("batch_size", [10, 2])
def test_a_remainder_pads_task_groups_with_weight_zero_rows(toy, batch_size):
  per_task, real = ip.grouped_rows(batch_size, 3)
  batches = ip.train_batches(toy, LENGTHS, batch_size, seed=0, layout="grouped")
  again = ip.train_batches(toy, LENGTHS, batch_size, seed=0, layout="grouped")
  for _ in range(3):
    batch, twin = next(batches), next(again)
    for k in batch:
      np.testing.assert_array_equal(batch[k], twin[k])  # deterministic
    assert batch["input_ids"].shape == (3, per_task, 8)
    np.testing.assert_array_equal(batch["task_id"], np.repeat(np.arange(3)[:, None], per_task, 1))  # sorted groups
    want_weight = (np.arange(per_task)[None] < np.asarray(real)[:, None]).astype(np.float32)
    np.testing.assert_array_equal(batch["weight"], want_weight)
    assert batch["weight"].sum() == batch_size
    real_rows = batch["weight"] > 0
    np.testing.assert_array_equal(batch["input_ids"][real_rows][:, 0] - 2, batch["task_id"][real_rows])  # own task
    assert np.all(batch["input_ids"][~real_rows] == 0) and np.all(batch["input_mask"][~real_rows] == 0)


def test_a_divisible_batch_is_not_padded(toy):
  batch = next(ip.train_batches(toy, LENGTHS, 12, seed=0, layout="grouped"))
  assert batch["input_ids"].shape == (3, 4, 8) and np.all(batch["weight"] == 1)


def test_padded_rows_that_the_data_axis_cannot_split_are_one_line():
  ip.check_grouped(32, 1, 3, 1)  # 33 rows on one device
  ip.check_grouped(30, 2, 3, 2)
  with pytest.raises(ValueError, match=r"BATCH_SIZE=32 gives 3 task groups of 11 rows \(33 rows.*data axis \(8\).*24"):
    ip.check_grouped(32, 1, 3, 8)


def test_a_gradient_step_on_a_padded_batch_uses_only_the_real_rows():
  """pcgrad's update on 3 groups of 4 rows (4 + 3 + 3 real) == sum_t alpha_t g_t with g_t each task's
  gradient on its real rows alone (numpy combination of separately computed gradients)."""
  real = fixed_batch(10, 12, seed=5)
  order = np.argsort(real["task_id"], kind="stable")
  real = {k: v[order] for k, v in real.items()}  # task-major: 4, 3, 3 rows
  per_task, counts = ip.grouped_rows(10, 3)
  assert counts == [4, 3, 3]
  padded = {}
  for k, v in real.items():
    parts, start = [], 0
    for t, n in enumerate(counts):
      part = v[start:start + n]
      start += n
      fill = np.full((per_task - n, *v.shape[1:]), -1 if k == "tags" else (t if k == "task_id" else 0), v.dtype)
      parts.append(np.concatenate([part, fill]))
    padded[k] = np.concatenate(parts)
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = Steps(build_model(dataclasses.replace(TINY, num_layers=1), "hard", NUM_CLASSES), optax.sgd(1.0), KINDS, mesh,
                partitioning.logical_axis_rules(), 0, 12, 12, grouped=True, weighting=weighting.build("pcgrad", 3))
  state = steps.init_state()
  real_j = jax.tree.map(jnp.asarray, real)
  with jax.set_mesh(mesh):
    _, aux, grads, _ = jax.jit(steps._loss_and_grads)(state.params, jax.tree.map(jnp.asarray, padded),
                                                      jax.random.key(1), state.weighting, state.step)
    # every task's gradient on its real rows alone: the Jacobian of the unpadded batch's per-task losses
    loss_T, jac = jax.jit(lambda p: (steps._task_losses(p, real_j, jax.random.key(0), False)[0],
                                     jax.jacrev(lambda q: steps._task_losses(q, real_j, jax.random.key(0), False)[0])(p))
                          )(state.params)
  np.testing.assert_array_equal(aux["task_count"], counts)
  np.testing.assert_allclose(aux["task_loss"], loss_T, rtol=1e-5)
  alpha = np.asarray(aux["task_weight"], np.float64)
  for key in grads:
    weights = alpha if key != "heads" else np.full(3, 1 / 3)
    want = jax.tree.map(lambda g: np.tensordot(weights, np.asarray(g, np.float64), 1), jac[key])
    for got_leaf, want_leaf in zip(jax.tree.leaves(grads[key]), jax.tree.leaves(want)):
      np.testing.assert_allclose(got_leaf, want_leaf, rtol=2e-4, atol=1e-6)
