"""Sharded training is the same computation: for every sharing strategy and every
(data, model) mesh of 8 devices, 20 train steps on a fixed batch give the losses of
one device, and the trained parameters stay in their shardings.

Cost is XLA compilation (one train step per strategy x mesh), so: every run starts
from the one-device initial state placed onto the mesh with jax.device_put (the
sharded init itself is tested in test_sharding_specs.py), the one-device reference
is computed once per strategy and shared by its meshes, and the jitted steps (the
very `Steps.train_step` jit, with its in/out shardings and donation) are compiled
ahead of time with XLA:CPU options that compile ~4x faster (FAST_COMPILE); that
changes no sharding and applies to the reference and the sharded runs alike.
"""

import dataclasses
import functools

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from helpers import TINY, fixed_batch
from mtl_jax.scale import partitioning
from mtl_jax import sharing
from mtl_jax.models.multitask import build_model
from mtl_jax.step.steps import Steps

pytestmark = pytest.mark.xdist_group("sharding_equivalence")  # one worker under -n: one-device references shared with _model

# heads 8, mlp 64, vocab 64 all divide 8; one layer: sharding is per layer, compile time is not
CFG = dataclasses.replace(TINY, num_heads=8, vocab_size=64, num_layers=1)
KINDS, CLASSES = ("classification", "regression", "classification"), (3, 1, 2)
MESHES = [(8, 1), (4, 2), (2, 4), (1, 8)]
# this file: the data-heavy meshes; test_sharding_equivalence_model.py: (2, 4), (1, 8)
# (split for time; they share `reference` when run in one session)
DATA_MESHES = MESHES[:2]
NUM_STEPS = 20
# XLA:CPU compile options, ~4x faster to compile these tiny programs (the new fusion
# emitters dominate compile time); numerics of reference and sharded runs alike.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
                "xla_cpu_use_fusion_emitters": False}


def compile_fast(lowered):
  try:
    return lowered.compile(FAST_COMPILE)
  except Exception:  # an XLA without one of these options: compile normally
    return lowered.compile()


def build(sharing_name, mesh, overrides=(), kinds=KINDS, classes=CLASSES, grouped=False):
  model = build_model(CFG, sharing_name, classes)
  return Steps(model, optax.adam(3e-3), kinds, mesh, partitioning.logical_axis_rules(overrides), 0, 16, 12,
               grouped=grouped)


def train(steps, state, batch, num_steps=NUM_STEPS):
  """`num_steps` steps of steps.train_step (compiled once, AOT); returns (state, losses)."""
  with jax.set_mesh(steps.mesh):
    placed = steps.put_batch(batch)
    step_fn = compile_fast(steps.train_step.lower(state, placed))
    losses = []
    for _ in range(num_steps):
      state, metrics = step_fn(state, steps.put_batch(batch))
      losses.append(metrics["loss"])
  return state, np.asarray(jax.device_get(losses))


def place(steps, host_state):
  return jax.device_put(host_state, steps.state_shardings)


@functools.lru_cache(maxsize=None)
def reference(sharing_name, overrides=(), num_tasks=3):
  """(initial host state, losses, final host params) on ONE device."""
  kinds, classes = (KINDS, CLASSES) if num_tasks == 3 else (KINDS + ("classification",), CLASSES + (2,))
  steps = build(sharing_name, partitioning.make_mesh((1, 1), devices=jax.devices()[:1]), overrides, kinds, classes)
  with jax.set_mesh(steps.mesh):
    state0 = compile_fast(steps._init.lower(jax.random.key(0)))(jax.random.key(0))
  init_host = jax.device_get(state0)
  state, losses = train(steps, state0, fixed_batch(num_tasks=num_tasks))
  return init_host, losses, jax.device_get(state.params)


def assert_same_training(losses, ref_losses, params, ref_params):
  assert np.all(np.isfinite(losses))
  assert ref_losses[-1] < 0.5 * ref_losses[0]  # it actually trains
  np.testing.assert_allclose(losses, ref_losses, rtol=2e-4, atol=2e-5)
  assert_params_close(params, ref_params)


def assert_params_close(params, ref_params):
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(ref_params)):
    if jax.tree_util.keystr(path).endswith("['key_bias']"):
      # softmax is shift-invariant: this gradient is exactly 0 up to round-off, which
      # Adam scales to +-lr steps, so only its size is comparable
      assert np.abs(np.asarray(a)).max() <= 3e-3 * NUM_STEPS
      continue
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=2e-4, err_msg=jax.tree_util.keystr(path))


def check_sharded_training(sharing_name, shape):
  init_host, ref_losses, ref_params = reference(sharing_name)
  steps = build(sharing_name, partitioning.make_mesh(shape))
  state, losses = train(steps, place(steps, init_host), fixed_batch())
  assert_same_training(losses, ref_losses, state.params, ref_params)
  # the trained state is still where the rules put it
  for leaf, want in zip(jax.tree.leaves(state), jax.tree.leaves(steps.state_shardings)):
    assert leaf.sharding.is_equivalent_to(want, leaf.ndim)
  emb = state.params["embedder"]["token"]["embedding"]
  assert emb.sharding.spec == P("model", None)
  assert {s.data.shape for s in emb.addressable_shards} == {(CFG.vocab_size // shape[1], CFG.d_model)}
  wi = [x for p, x in jax.tree_util.tree_leaves_with_path(state.params)
        if jax.tree_util.keystr(p).endswith("['mlp']['wi']['kernel']")]
  assert wi and all(x.sharding.spec[-1] == "model" and
                    {s.data.shape[-1] for s in x.addressable_shards} == {CFG.mlp_dim // shape[1]} for x in wi)



@pytest.mark.parametrize("shape", DATA_MESHES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("sharing_name", sharing.names())
def test_sharded_training_matches_one_device(sharing_name, shape):
  check_sharded_training(sharing_name, shape)


TASK_PARALLEL = (("tasks", "model"),)


@pytest.mark.parametrize("shape", [(2, 4)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_task_parallel_soft_towers_train_like_one_device(shape):
  """4 soft-sharing towers, one per device along 'model' (the 'tasks' axis split on
  'model'); training is unchanged. Falls back to the stacked heads' 'tasks' axis if
  'soft' is not registered."""
  name = "soft" if "soft" in sharing.names() else "hard"
  init_host, ref_losses, ref_params = reference(name, TASK_PARALLEL, num_tasks=4)
  steps = build(name, partitioning.make_mesh(shape), TASK_PARALLEL, KINDS + ("classification",), CLASSES + (2,))
  state = place(steps, init_host)
  towers = state.params["trunk"]["tied"] if name == "soft" else {"heads": state.params["heads"]["kernel"]}
  for leaf in jax.tree.leaves(towers):
    assert leaf.sharding.spec[0] == "model" and "model" not in tuple(leaf.sharding.spec)[1:]
    assert {s.data.shape[0] for s in leaf.addressable_shards} == {4 // shape[1]}  # one task's tower
    assert {s.data.shape[1:] for s in leaf.addressable_shards} == {leaf.shape[1:]}  # whole
  assert state.params["heads"]["kernel"].sharding.spec == P("model", None, None)
  state, losses = train(steps, state, fixed_batch(num_tasks=4))
  assert_same_training(losses, ref_losses, state.params, ref_params)


def test_grouped_soft_towers_task_parallel_train_like_one_device_gather():
  """Soft sharing's grouped route (towers vmapped over task row groups) with the towers split
  over 'model' and rows over 'data' trains like the one-device per-example gather route.
  fixed_batch(num_tasks=4) holds 4 rows of each task (interleaved), a valid grouped batch."""
  init_host, ref_losses, ref_params = reference("soft", TASK_PARALLEL, num_tasks=4)
  steps = build("soft", partitioning.make_mesh((2, 4)), TASK_PARALLEL, KINDS + ("classification",), CLASSES + (2,),
                grouped=True)
  assert np.bincount(fixed_batch(num_tasks=4)["task_id"]).tolist() == [4, 4, 4, 4]
  state, losses = train(steps, place(steps, init_host), fixed_batch(num_tasks=4))
  assert_same_training(losses, ref_losses, state.params, ref_params)
