"""Per-task params carry the 'tasks' logical axis (experts 'experts'), the shardings
resolve under a task-parallel rule, and the learned mixing weights are inspectable."""

import json
import re

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import traverse_util

from mtl_jax.scale import partitioning
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.models.multitask import build_model
from mtl_jax.sharing import inspect
from mtl_jax.step.steps import dummy_batch

CFG = EncoderConfig(d_model=16, num_heads=2, mlp_dim=32, num_layers=2, max_len=8, vocab_size=32)
T = 3
# path regex inside the trunk -> the logical name its leading axis must carry
LEADING = {
    "soft": {r"^tied/": "tasks"},
    "sluice": {r"^sluice/(layer_\d|alpha_\d|beta|ln_final)": "tasks"},
    "cross_stitch": {r"^cross_stitch/(layer_\d|alpha_\d|ln_final)": "tasks"},
    "mmoe": {r"^mmoe/experts/": "experts", r"^mmoe/gate_": "tasks"},
}


def boxed_params(name):
  model = build_model(CFG, name, [2, 3, 1])
  batch = dummy_batch(4, 6)
  return model, jax.eval_shape(model.init, jax.random.key(0), batch)["params"]


@pytest.mark.parametrize("name", sorted(LEADING))
def test_per_task_params_carry_logical_axis(name):
  _, params = boxed_params(name)
  specs = traverse_util.flatten_dict(nn.get_partition_spec(params["trunk"]), sep="/")
  shapes = traverse_util.flatten_dict(nn.meta.unbox(params["trunk"]), sep="/")
  checked = 0
  for path, spec in specs.items():
    for pattern, axis in LEADING[name].items():
      if re.search(pattern, path):
        assert spec[0] == axis, (path, spec)
        assert shapes[path].shape[0] == (4 if axis == "experts" else T), (path, shapes[path].shape)
        assert len(spec) == len(shapes[path].shape), (path, spec)
        checked += 1
  assert checked >= 10
  # the heads are per task too
  assert nn.get_partition_spec(params["heads"])["kernel"][0] == "tasks"


@pytest.mark.parametrize("name", sorted(LEADING))
def test_task_parallel_rule_shards_the_task_axis(name):
  _, params = boxed_params(name)
  mesh = partitioning.make_mesh((1, 1))
  rules = partitioning.logical_axis_rules(overrides=[("tasks", "model"), ("experts", "model")])
  shardings = traverse_util.flatten_dict(partitioning.logical_shardings(params, mesh, rules), sep="/")
  axis_path = {"soft": "trunk/tied/layers/layer_0/mlp/wi/kernel", "sluice": "trunk/sluice/alpha_0",
               "cross_stitch": "trunk/cross_stitch/layer_1/mlp/wo/kernel",
               "mmoe": "trunk/mmoe/experts/layers/layer_0/mlp/wi/kernel"}[name]
  assert shardings[axis_path].spec[0] == "model"


def test_mixing_weights_are_found_by_path():
  weights = {}
  for name in ("sluice", "cross_stitch", "mmoe", "soft", "hard"):
    model, boxed = boxed_params(name)
    params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), dummy_batch(4, 6))["params"])
    weights[name] = inspect.mixing_weights(params)
    json.dumps(weights[name])  # JSON-friendly
  assert sorted(weights["sluice"]) == ["sluice/alpha/layer_0", "sluice/alpha/layer_1", "sluice/beta"]
  alpha = np.array(weights["sluice"]["sluice/alpha/layer_0"])
  assert alpha.shape == (2 * T, 2 * T) and np.allclose(np.diag(alpha), 0.9) and np.allclose(alpha.sum(1), 1)
  assert np.allclose(weights["sluice"]["sluice/beta"], [[0.1, 0.9]] * T)
  assert sorted(weights["cross_stitch"]) == ["cross_stitch/alpha/layer_0", "cross_stitch/alpha/layer_1"]
  assert np.array(weights["cross_stitch"]["cross_stitch/alpha/layer_1"]).shape == (T, T)
  assert sorted(weights["mmoe"]) == ["mmoe/gate_logits/bias", "mmoe/gate_logits/kernel_norm"]
  assert np.array(weights["mmoe"]["mmoe/gate_logits/bias"]).shape == (T, 4)
  assert weights["soft"] == {} and weights["hard"] == {}
  # any prefix, boxed or not: {'params': ...} from model.init works too
  model, _ = boxed_params("sluice")
  assert sorted(inspect.mixing_weights(jax.jit(model.init)(jax.random.key(0), dummy_batch(4, 6)))) == sorted(
      weights["sluice"])


def test_mmoe_gate_probabilities():
  model, _ = boxed_params("mmoe")
  batch = dummy_batch(4, 6)
  batch["input_ids"] = np.arange(24, dtype=np.int32).reshape(4, 6) % CFG.vocab_size
  batch["task_id"] = np.array([0, 2, 2, 0], np.int32)
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), batch)["params"])
  probs = np.array(inspect.gate_probabilities(model, params, batch)["mmoe/gate_probabilities"])
  assert probs.shape == (T, 4)
  np.testing.assert_allclose(probs.sum(1), [1.0, 0.0, 1.0], rtol=1e-5)  # task 1 is absent
  hard, _ = boxed_params("hard")
  assert inspect.gate_probabilities(hard, nn.meta.unbox(hard.init(jax.random.key(0), batch)["params"]), batch) == {}
