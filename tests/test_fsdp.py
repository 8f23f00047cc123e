"""FSDP preset (gin/meshes/fsdp.gin) on the 8 fake CPU devices: the same losses as pure
data parallelism, every parameter and Adam moment with a d_model ('embed') dimension
split 8 ways (bytes read from the arrays' shardings), and checkpoints that restore across
the two presets."""

import flax.linen as nn
import gin
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from helpers import fixed_batch
from mtl_jax.scale import partitioning
from mtl_jax.step import steps as steps_lib
from mtl_jax.run.checkpoints import Checkpoints
from test_sharding_equivalence import CFG, build, compile_fast

NUM_STEPS = 6


def fsdp_rules():
  gin.clear_config()
  gin.parse_config_file("gin/meshes/fsdp.gin")
  rules = partitioning.logical_axis_rules()
  gin.clear_config()
  return rules


def make(sharing, rules):
  return build(sharing, partitioning.make_mesh((8, 1)), overrides=tuple(r for r in rules if r[0] in
                                                                          ("batch", "embed")))


def train(steps, state, n=NUM_STEPS):
  with jax.set_mesh(steps.mesh):
    fn = compile_fast(steps.train_step.lower(state, steps.put_batch(fixed_batch())))
    losses = []
    for _ in range(n):
      state, metrics = fn(state, steps.put_batch(fixed_batch()))
      losses.append(float(metrics["loss"]))
  return state, np.array(losses)


def logical_names(steps):
  """Logical axis names of every parameter, from an abstract init (independent of the shardings)."""
  boxed = jax.eval_shape(lambda r: steps.model.init(r, steps_lib.dummy_batch(16, 12))["params"], jax.random.key(0))
  return jax.tree.map(lambda spec: tuple(spec), nn.get_partition_spec(boxed), is_leaf=lambda x: isinstance(x, P))


def test_fsdp_preset_resolves_to_batch_then_embed_on_data():
  rules = fsdp_rules()
  assert rules[:2] == (("batch", "data"), ("embed", "data"))
  assert ("embed", None) not in rules
  mesh = partitioning.make_mesh((8, 1))
  with nn.logical_axis_rules(rules):  # an activation keeps its batch split and its embed dim whole
    assert nn.logical_to_mesh_axes(("batch", "length", "embed")) == P("data", None, None)
  assert partitioning.logical_to_spec(("embed", "mlp"), (32, 64), rules, mesh) == P("data", "model")


@pytest.mark.parametrize("sharing", ["hard", "soft"])
def test_fsdp_losses_equal_data_parallel_and_parameters_are_divided(sharing):
  rules = fsdp_rules()
  dp, fsdp = build(sharing, partitioning.make_mesh((8, 1))), make(sharing, rules)
  with jax.set_mesh(dp.mesh):
    host0 = jax.device_get(dp.init_state())
  state_dp, losses_dp = train(dp, jax.device_put(host0, dp.state_shardings))
  state_fsdp, losses_fsdp = train(fsdp, jax.device_put(host0, fsdp.state_shardings))
  np.testing.assert_allclose(losses_fsdp, losses_dp, rtol=2e-5, atol=1e-6)
  assert losses_dp[-1] < losses_dp[0]

  # per-device bytes, leaf by leaf: a d_model dimension divides its array by 8, nothing else does
  names = jax.tree.leaves(logical_names(fsdp), is_leaf=lambda x: isinstance(x, tuple))
  leaves = jax.tree.leaves(state_fsdp.params)
  assert len(names) == len(leaves)
  expected = 0
  for leaf_names, leaf in zip(names, leaves):
    split = 8 if "embed" in leaf_names and leaf.shape[leaf_names.index("embed")] % 8 == 0 else 1
    assert leaf.addressable_shards[0].data.nbytes == leaf.nbytes // split, leaf_names
    expected += leaf.nbytes // split
  total = sum(x.nbytes for x in leaves)
  assert partitioning.per_device_bytes(state_fsdp.params) == expected < 0.2 * total
  assert partitioning.per_device_bytes(state_dp.params) == total  # data parallel: a full replica per device
  mu = state_fsdp.opt_state[0].mu  # Adam's moments are split like their parameters
  assert partitioning.per_device_bytes(mu) == expected
  np.testing.assert_allclose(jax.device_get(state_fsdp.params["heads"]["kernel"]),
                             jax.device_get(state_dp.params["heads"]["kernel"]), rtol=1e-4, atol=1e-6)


def test_fsdp_checkpoint_restores_into_data_parallel_and_back(tmp_path):
  rules = fsdp_rules()
  fsdp, dp = make("hard", rules), build("hard", partitioning.make_mesh((8, 1)))
  state = fsdp.init_state()
  state, _ = fsdp.run_train_step(state, fixed_batch())
  ckpt = Checkpoints(tmp_path, keep=2, period=1)
  assert ckpt.save(1, state, {"batches_consumed": 1})
  ckpt.close()
  want = jax.device_get(state.params)
  for target in (dp, fsdp):
    ckpt = Checkpoints(tmp_path, keep=2, period=1)
    restored, meta = ckpt.restore(1, target.abstract_state)
    ckpt.close()
    assert meta == {"batches_consumed": 1} and int(restored.step) == 1
    for leaf, sharding in zip(jax.tree.leaves(restored), jax.tree.leaves(target.state_shardings)):
      assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
    for a, b in zip(jax.tree.leaves(jax.device_get(restored.params)), jax.tree.leaves(want)):
      np.testing.assert_array_equal(a, b)
  wi = restored.params["trunk"]["trunk"]["layer_0"]["mlp"]["wi"]["kernel"]
  assert {s.data.shape for s in wi.addressable_shards} == {(CFG.d_model // 8, CFG.mlp_dim)}
