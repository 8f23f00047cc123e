"""Soft sharing: routing is exact, the tied/shared split is configurable, and a huge
tie weight keeps identically initialised towers together under real training."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtl_jax.scale import partitioning
from mtl_jax import sharing
from mtl_jax.step import steps as steps_lib
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.models.multitask import MultiTaskModel
from mtl_jax.sharing.soft import SoftSharing
from mtl_jax.sharing.towers import Tower

CFG = EncoderConfig(d_model=16, num_heads=2, mlp_dim=32, num_layers=2, max_len=8, vocab_size=64)
T, B, L = 3, 7, 6


def inputs(seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(B, L, CFG.d_model)).astype(np.float32))
  mask = np.ones((B, L), np.int32)
  mask[2, 4:] = 0
  return x, jnp.asarray(mask), jnp.asarray([0, 1, 2, 2, 0, 1, 0], jnp.int32)


def init(strategy):
  x, mask, task_id = inputs()
  return nn.meta.unbox(jax.jit(strategy.init)(jax.random.key(0), x, mask, task_id)["params"])


def shapes(strategy):
  x, mask, task_id = inputs()
  return nn.meta.unbox(jax.eval_shape(strategy.init, jax.random.key(0), x, mask, task_id)["params"])


def apply(module, params, *args):
  return np.asarray(jax.jit(module.apply)({"params": params}, *args))


def per_task_reference(params, x, mask, task_id):
  """Each task's tower alone (shared params + its slice of the tied ones); example b keeps tower task_id[b]."""
  out = np.zeros(x.shape, np.float32)
  for t in range(T):
    tied_t = jax.tree.map(lambda w: w[t], params.get("tied", {}))
    merged = {**params.get("shared", {})}
    for key, sub in tied_t.items():
      merged[key] = {**merged.get(key, {}), **sub}
    h = apply(Tower(CFG), merged, x, mask)
    out[np.asarray(task_id) == t] = h[np.asarray(task_id) == t]
  return out


def test_routing_is_exact():
  x, mask, task_id = inputs()
  gather = SoftSharing(CFG, T, same_init=False, routing="gather")
  params = init(gather)
  leaf = params["tied"]["layers"]["layer_0"]["mlp"]["wi"]["kernel"]
  assert leaf.shape[0] == T and not np.allclose(leaf[0], leaf[1])  # towers really differ
  want = per_task_reference(params, x, mask, task_id)
  np.testing.assert_allclose(apply(gather, params, x, mask, task_id), want, rtol=1e-4, atol=1e-5)
  dense = SoftSharing(CFG, T, same_init=False, routing="dense")
  np.testing.assert_allclose(apply(dense, params, x, mask, task_id), want, rtol=1e-4, atol=1e-5)


def test_tied_and_shared_split():
  default = shapes(SoftSharing(CFG, T))
  assert set(default) == {"tied", "shared"}
  assert set(default["tied"]) == {"layers"} and set(default["shared"]) == {"ln_final"}
  everything = shapes(SoftSharing(CFG, T, tied=(".*",)))
  assert set(everything) == {"tied"} and everything["tied"]["ln_final"]["LayerNorm_0"]["scale"].shape == (T, 16)
  mlp_only = shapes(SoftSharing(CFG, T, tied=("/mlp/",)))
  assert set(mlp_only["tied"]["layers"]["layer_0"]) == {"mlp"}
  assert "attention" in mlp_only["shared"]["layers"]["layer_0"]
  with pytest.raises(ValueError, match="matches no tower parameter"):
    shapes(SoftSharing(CFG, T, tied=("^no_such_layer",)))
  with pytest.raises(ValueError, match="penalty"):
    sharing.soft.soft(CFG, T, penalty="l1")


def test_nothing_tied_is_hard_sharing():
  x, mask, task_id = inputs()
  hard = sharing.build("hard", CFG, T)
  hard_params = init(hard)
  soft = SoftSharing(CFG, T, tied=())
  soft_params = {"shared": {"layers": hard_params["trunk"], "ln_final": hard_params["ln_final"]}}
  assert jax.tree.structure(soft_params) == jax.tree.structure(shapes(soft))
  np.testing.assert_allclose(apply(soft, soft_params, x, mask, task_id), apply(hard, hard_params, x, mask, task_id),
                             rtol=1e-5, atol=1e-6)


def tower_spread(params) -> float:
  """sqrt(sum_t ||theta_t - mean||^2) over the tied towers."""
  leaves = jax.tree.leaves(params["trunk"]["tied"])
  return float(np.sqrt(sum(np.sum((w - w.mean(0)) ** 2) for w in map(lambda w: np.asarray(w, np.float64), leaves))))


def train_spread(weight: float, steps: int = 12, tx=None) -> float:
  model = MultiTaskModel(config=CFG, trunk=SoftSharing(CFG, T, weight=weight, same_init=True), num_classes=(2, 3, 2))
  batch_size, length = 12, 8
  runner = steps_lib.Steps(model, tx or optax.adam(1e-2), ["classification"] * T, partitioning.make_mesh((1, 1)),
                           partitioning.logical_axis_rules(), seed=0, batch_size=batch_size, length=length)
  state = runner.init_state()
  assert tower_spread(state.params) == 0.0  # identical init
  rng = np.random.default_rng(0)
  for _ in range(steps):
    batch = steps_lib.dummy_batch(batch_size, length)
    batch["input_ids"] = rng.integers(1, CFG.vocab_size, (batch_size, length)).astype(np.int32)
    batch["task_id"] = np.tile(np.arange(T, dtype=np.int32), batch_size // T)  # mixed
    batch["label"] = (batch["task_id"] == 1).astype(np.int32)  # tasks pull their towers apart
    state, metrics = runner.run_train_step(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  return tower_spread(state.params)


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_huge_weight_keeps_towers_equal():
  # Adam moves every coordinate by ~lr whatever the gradient's size, so a huge tie keeps
  # the towers within that step of each other, while untied towers drift apart.
  free, tied = train_spread(0.0), train_spread(1e6)
  assert free > 1.0, free  # with no tie each tower follows its own task
  assert tied < 0.1 * free, (tied, free)
  # Plain gradient descent with weight = 1 / (2 lr) puts every tower back on the mean each
  # step: only the last step's task gradients separate them.
  sgd = optax.sgd(0.5)
  free, tied = train_spread(0.0, tx=sgd), train_spread(1.0, tx=sgd)
  assert tied < 0.03 * free, (tied, free)


def grouped_inputs(seed=1, per_task=2, shuffle=True):
  """B = T * per_task rows, exactly per_task of each task, optionally in shuffled order."""
  rng = np.random.default_rng(seed)
  task_id = np.repeat(np.arange(T, dtype=np.int32), per_task)
  if shuffle:
    task_id = rng.permutation(task_id)
  x = rng.normal(size=(len(task_id), L, CFG.d_model)).astype(np.float32)
  mask = np.ones((len(task_id), L), np.int32)
  mask[1, 3:] = 0
  return jnp.asarray(x), jnp.asarray(mask), jnp.asarray(task_id)


@pytest.mark.parametrize("shuffle", [False, True])
def test_grouped_routing_is_exact(shuffle):
  """grouped=True (towers vmapped over [T, B/T] row groups) equals each task's own tower,
  in value and in gradient, whether the rows come task-major or shuffled."""
  x, mask, task_id = grouped_inputs(shuffle=shuffle)
  soft = SoftSharing(CFG, T, same_init=False)
  params = init(soft)
  want = per_task_reference(params, x, mask, task_id)
  got = np.asarray(jax.jit(lambda p, x: soft.apply({"params": p}, x, mask, task_id, grouped=True))(params, x))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

  def loss(p, x, grouped):
    h = soft.apply({"params": p}, x, mask, task_id, grouped=grouped)
    return jnp.sum(jnp.sin(h) * jnp.arange(h.shape[-1]))  # a loss that weighs every unit differently

  g_grouped = jax.jit(jax.grad(lambda p, x: loss(p, x, True), argnums=(0, 1)))(params, x)
  g_gather = jax.jit(jax.grad(lambda p, x: loss(p, x, False), argnums=(0, 1)))(params, x)
  for a, b in zip(jax.tree.leaves(g_grouped), jax.tree.leaves(g_gather)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
  assert float(jnp.abs(g_grouped[0]["tied"]["layers"]["layer_1"]["mlp"]["wo"]["kernel"]).sum()) > 0


def test_grouped_train_step_matches_mixed_step():
  """Steps(grouped=True) on a grouped batch takes the same training step as the gather route."""
  batch_size, length = 12, 8
  rng = np.random.default_rng(3)
  batch = steps_lib.dummy_batch(batch_size, length)
  batch["input_ids"] = rng.integers(1, CFG.vocab_size, (batch_size, length)).astype(np.int32)
  batch["task_id"] = np.repeat(np.arange(T, dtype=np.int32), batch_size // T)  # flatten_grouped's order
  batch["label"] = rng.integers(0, 2, batch_size).astype(np.int32)
  finals = []
  for grouped in (False, True):
    model = MultiTaskModel(config=CFG, trunk=SoftSharing(CFG, T, weight=1e-2, same_init=False), num_classes=(2, 3, 2))
    # SGD, not Adam: Adam turns float noise in a gradient that is exactly 0 in theory (the
    # attention key bias: softmax ignores it) into full-size steps of either sign.
    runner = steps_lib.Steps(model, optax.sgd(0.05), ["classification"] * T, partitioning.make_mesh((1, 1)),
                             partitioning.logical_axis_rules(), seed=0, batch_size=batch_size, length=length,
                             grouped=grouped)
    state = runner.init_state()
    for _ in range(3):
      state, metrics = runner.run_train_step(state, batch)
    finals.append((float(metrics["loss"]), jax.device_get(state.params)))
  assert finals[0][0] == pytest.approx(finals[1][0], rel=1e-5)
  for a, b in zip(jax.tree.leaves(finals[0][1]), jax.tree.leaves(finals[1][1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
