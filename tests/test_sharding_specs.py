"""Where things live: mesh construction, logical axis rules, parameter / optimizer /
batch shardings for every strategy on every mesh, sharded init, activation
constraints, task-parallel towers, and the multi-process mesh checks.

Placement checks use the abstract state (eval_shape, no compile) for the whole
strategy x mesh grid; one real sharded init checks the device buffers themselves.
"""

import dataclasses
import logging
import pathlib

import flax.linen as nn
import gin
import jax
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, PartitionSpec as P

from helpers import TINY, fixed_batch
from mtl_jax.scale import partitioning
from mtl_jax import sharing
from mtl_jax.models.multitask import build_model
from mtl_jax.step.steps import Steps

REPO = pathlib.Path(__file__).resolve().parents[1]
# Everything split on 'model' divisible by 8: heads 8, mlp 64, vocab 64.
CFG = dataclasses.replace(TINY, num_heads=8, vocab_size=64)
KINDS4 = ("classification", "regression", "classification", "classification")
CLASSES4 = (3, 1, 2, 2)
MESHES = [(8, 1), (4, 2), (2, 4), (1, 8)]


def make_steps(sharing_name, shape, overrides=(), kinds=("classification", "regression", "classification"),
               num_classes=(3, 1, 2)):
  mesh = partitioning.make_mesh(shape)
  model = build_model(CFG, sharing_name, num_classes)
  return Steps(model, optax.adam(3e-3), kinds, mesh, partitioning.logical_axis_rules(overrides), 0, 16, 12)


def logical_specs(sharing_name, num_classes):
  """Each param's logical axis names, straight from the model's metadata."""
  model = build_model(CFG, sharing_name, num_classes)
  boxed = jax.eval_shape(lambda r: model.init(r, fixed_batch(num_tasks=len(num_classes))), jax.random.key(0))
  return nn.get_partition_spec(boxed["params"])


def flat(tree):
  return {jax.tree_util.keystr(p): x for p, x in
          jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: isinstance(x, P))}


# ---------------------------------------------------------------- mesh and rules

def test_default_rules_are_t5x_style():
  rules = dict(partitioning.logical_axis_rules())
  assert rules["batch"] == "data"
  assert rules["mlp"] == rules["heads"] == rules["vocab"] == "model"
  assert rules["embed"] is None and rules["kv"] is None and rules["tasks"] is None


def test_overrides_come_first_and_replace_the_default():
  rules = partitioning.logical_axis_rules([("tasks", "model"), ("mlp", None)])
  assert rules[:2] == (("tasks", "model"), ("mlp", None))  # precedence: before 'heads'/'vocab'
  assert [n for n, _ in rules].count("mlp") == 1 and [n for n, _ in rules].count("tasks") == 1
  assert dict(partitioning.logical_axis_rules([("batch", ["data", "model"])]))["batch"] == ("data", "model")
  with pytest.raises(ValueError, match="mesh axes are"):
    partitioning.logical_axis_rules([("tasks", "modle")])
  with pytest.raises(ValueError, match="pair"):
    partitioning.logical_axis_rules([("tasks",)])


@pytest.mark.parametrize("shape,expect", [((8, 1), (8, 1)), ((-1, 2), (4, 2)), ((2, -1), (2, 4)), ((1, 8), (1, 8))])
def test_make_mesh_shapes_and_auto_axes(shape, expect):
  mesh = partitioning.make_mesh(shape)
  assert mesh.axis_names == ("data", "model")
  assert tuple(mesh.shape.values()) == expect
  assert tuple(mesh.axis_types) == (AxisType.Auto, AxisType.Auto)


def test_make_mesh_errors():
  with pytest.raises(ValueError, match="needs 16 devices"):
    partitioning.make_mesh((4, 4))
  with pytest.raises(ValueError, match="does not divide"):
    partitioning.make_mesh((-1, 3))
  with pytest.raises(ValueError, match="at most one -1"):
    partitioning.make_mesh((-1, -1))


def test_multi_process_data_axis_check():
  partitioning.check_process_grid([[0, 0], [0, 0]])        # one process: anything goes
  partitioning.check_process_grid([[0, 0], [1, 1]])        # (2, 2) over 2 hosts of 2 devices
  partitioning.check_process_grid([[0], [0], [1], [1]])    # (4, 1)
  with pytest.raises(ValueError, match="'data' row"):
    partitioning.check_process_grid([[0, 0, 1, 1]])        # (1, 4): model axis across hosts
  with pytest.raises(ValueError, match="multiple of the process count"):
    partitioning.check_process_grid([[0, 1], [0, 1]])



@pytest.mark.parametrize("name,shape,tasks_axis", [("data_parallel", (8, 1), None),
                                                    ("model_parallel_2", (4, 2), None),
                                                    ("task_parallel", (4, 2), "model")])
def test_mesh_gin_files(clean_gin, name, shape, tasks_axis):
  gin.parse_config_files_and_bindings([str(REPO / "gin" / "meshes" / f"{name}.gin")], [])
  mesh = partitioning.make_mesh()
  assert tuple(mesh.shape.values()) == shape
  rules = partitioning.logical_axis_rules()
  assert dict(rules)["tasks"] == tasks_axis and dict(rules)["mlp"] == "model"


# ------------------------------------------------------- where params are placed

@pytest.mark.parametrize("shape", MESHES)
@pytest.mark.parametrize("sharing_name", sharing.names())
def test_state_shardings_follow_the_rules(sharing_name, shape):
  steps = make_steps(sharing_name, shape)
  params = flat(jax.tree.map(lambda s: s.spec, steps.state_shardings.params))
  logical = flat(logical_specs(sharing_name, (3, 1, 2)))
  assert params.keys() == logical.keys()
  assert params["['embedder']['token']['embedding']"] == P("model", None)  # vocab on 'model'
  assert params["['heads']['kernel']"] == P(None, None, None)              # tasks -> None by default
  mlp_in = [k for k in params if k.endswith("['mlp']['wi']['kernel']")]
  assert mlp_in, "every strategy has transformer mlp kernels"
  for path, spec in params.items():
    names = tuple(logical[path])
    for name, axis in zip(names, tuple(spec) + (None,) * (len(names) - len(spec))):
      expected = "model" if name in ("vocab", "mlp", "heads") else None
      assert axis == expected, (path, names, spec)
  # the optimizer's moments sit exactly where their parameters do
  mu = steps.state_shardings.opt_state[0].mu
  assert jax.tree.map(lambda s: s.spec, mu) == jax.tree.map(lambda s: s.spec, steps.state_shardings.params)
  # abstract state carries the same shardings (what checkpoints restore into)
  assert jax.tree.leaves(steps.abstract_state.params)[0].sharding.mesh.shape == steps.mesh.shape


def test_sharded_init_places_real_shards_and_matches_one_device():
  steps = make_steps("hard", (2, 4))
  # init is ONE jit with out_shardings: every leaf is born in its sharding, no device
  # ever holds the full model first
  with jax.set_mesh(steps.mesh):
    text = steps._init.lower(jax.random.key(0)).as_text()
  assert "sdy.sharding" in text or "mhlo.sharding" in text
  state = steps.init_state()
  for leaf, want in zip(jax.tree.leaves(state), jax.tree.leaves(steps.state_shardings)):
    assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (leaf.sharding, want)
  params = flat(state.params)
  emb = params["['embedder']['token']['embedding']"]
  assert emb.sharding.spec == P("model", None)
  assert {s.data.shape for s in emb.addressable_shards} == {(64 // 4, 32)}
  wi = params["['trunk']['trunk']['layer_0']['mlp']['wi']['kernel']"]
  assert wi.sharding.spec == P(None, "model") and {s.data.shape for s in wi.addressable_shards} == {(32, 16)}
  q = params["['trunk']['trunk']['layer_0']['attention']['query_kernel']"]
  assert {s.data.shape for s in q.addressable_shards} == {(32, 2, 4)}  # 8 heads / 4
  mu = state.opt_state[0].mu["embedder"]["token"]["embedding"]
  assert mu.sharding.spec == P("model", None)
  # sharding-invariant RNG: the same values as a one-device init
  single = make_steps_single("hard").init_state()
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(single.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def make_steps_single(sharing_name):
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  model = build_model(CFG, sharing_name, (3, 1, 2))
  return Steps(model, optax.adam(3e-3), ("classification", "regression", "classification"), mesh,
               partitioning.logical_axis_rules(), 0, 16, 12)


def test_batches_are_split_on_data_and_activations_constrained():
  steps = make_steps("hard", (4, 2))
  batch = fixed_batch()
  placed = steps.put_batch(batch)
  assert placed["input_ids"].sharding.spec == P("data")
  assert {s.data.shape for s in placed["input_ids"].addressable_shards} == {(4, 12)}
  glob = steps.put_global_batch(batch)  # eval path: same global array in one process
  for k in batch:
    np.testing.assert_array_equal(np.asarray(glob[k]), np.asarray(placed[k]))
  # nn.with_logical_constraint is live: traced under the rules and jax.set_mesh
  with jax.set_mesh(steps.mesh):
    text = steps.train_step.lower(steps.abstract_state, placed).as_text()
  constraints = [l for l in text.splitlines() if "sharding_constraint" in l]
  assert len(constraints) >= 2 * CFG.num_layers, "activation constraints were dropped (no rules / no mesh?)"
  assert any('[{"data"}, {}, {"model"}]' in l for l in constraints)  # ('batch', 'length', 'mlp')
  assert any('[{"data"}, {}, {}]' in l for l in constraints)         # ('batch', 'length', 'embed')


def test_non_divisible_dims_fall_to_the_next_rule_with_a_warning(caplog):
  name = "soft" if "soft" in sharing.names() else "hard"
  with caplog.at_level(logging.WARNING, logger="mtl_jax"):
    steps = make_steps(name, (4, 2), overrides=[("tasks", "model")])  # 3 tasks on 'model' of 2
  params = steps.state_shardings.params
  assert params["heads"]["kernel"].spec == P(None, None, None)
  assert "'tasks' (size 3) is not divisible by mesh axis 'model' (2 devices)" in caplog.text
  if name == "soft":  # 'model' is free again, so the tower's mlp dimension takes it
    wi = params["trunk"]["tied"]["layers"]["layer_0"]["mlp"]["wi"]["kernel"]
    assert wi.spec == P(None, None, "model")
  assert partitioning.logical_to_spec(("vocab", "embed"), (63, 32), partitioning.logical_axis_rules(),
                                      steps.mesh) == P(None, None)  # an odd vocabulary stays whole


# ------------------------------------------------------------- task parallelism

@pytest.mark.parametrize("shape", [(4, 2), (2, 4)])
@pytest.mark.parametrize("sharing_name", sharing.names())
def test_task_parallel_rules_split_every_tasks_axis_on_model(sharing_name, shape):
  steps = make_steps(sharing_name, shape, overrides=[("tasks", "model")], kinds=KINDS4, num_classes=CLASSES4)
  params = flat(jax.tree.map(lambda s: s.spec, steps.state_shardings.params))
  logical = flat(logical_specs(sharing_name, CLASSES4))
  assert params["['heads']['kernel']"] == P("model", None, None)
  with_tasks = [k for k, names in logical.items() if "tasks" in tuple(names)]
  for path in with_tasks:
    names, spec = tuple(logical[path]), tuple(params[path])
    assert spec[names.index("tasks")] == "model", (path, names, spec)
    assert list(spec).count("model") == 1  # the tower is whole on its device
  if sharing_name == "soft":  # the stacked towers: leading task axis on 'model'
    tied = [k for k in params if k.startswith("['trunk']['tied']")]
    assert tied and all(params[k][0] == "model" for k in tied)
