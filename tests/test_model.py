"""Encoder output shapes, logical axis names on every parameter, and the stacked heads."""

import flax.linen as nn
import jax
import numpy as np

from helpers import NUM_CLASSES, TINY, fixed_batch
from mtl_jax.models.multitask import build_model

KNOWN_AXES = {"vocab", "embed", "heads", "kv", "mlp", "length", "tasks", "classes"}


def _init():
  model = build_model(TINY, "hard", NUM_CLASSES)
  batch = fixed_batch()
  variables = model.init(jax.random.key(0), batch)
  return model, batch, variables


def test_output_shapes_and_class_masking():
  model, batch, variables = _init()
  out = model.apply(variables, batch)
  assert out.pooled_logits.shape == (16, 3)  # widest label set
  assert out.token_logits.shape == (16, 12, 3)
  # task 1 is regression (1 output) and task 2 binary: their extra classes are masked
  pooled = np.asarray(out.pooled_logits)
  for t, n in enumerate(NUM_CLASSES):
    rows = np.asarray(batch["task_id"]) == t
    assert np.all(pooled[rows][:, n:] < -1e30) and np.all(np.abs(pooled[rows][:, :n]) < 1e3)


def test_every_param_has_logical_axis_names():
  _, _, variables = _init()
  leaves = jax.tree.leaves(variables["params"], is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert leaves
  for leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), type(leaf)
    assert len(leaf.names) == leaf.value.ndim and set(leaf.names) <= KNOWN_AXES, leaf.names
  spec = nn.get_partition_spec(variables["params"])
  assert tuple(spec["heads"]["kernel"]) == ("tasks", "embed", "classes")
  assert tuple(spec["embedder"]["token"]["embedding"]) == ("vocab", "embed")


def test_heads_match_numpy_reference():
  """Each example uses its own task's head on the masked mean of the trunk output."""
  model, batch, variables = _init()
  params = nn.meta.unbox(variables["params"])
  out, inter = model.apply({"params": params}, batch, capture_intermediates=lambda m, _: m.name == "trunk")
  hidden = np.asarray(inter["intermediates"]["trunk"]["__call__"][0])
  mask = batch["input_mask"][..., None]
  pooled = (hidden * mask).sum(1) / mask.sum(1)
  kernel, bias = np.asarray(params["heads"]["kernel"]), np.asarray(params["heads"]["bias"])
  for b, t in enumerate(batch["task_id"]):
    n = NUM_CLASSES[t]
    expect = pooled[b] @ kernel[t] + bias[t]
    np.testing.assert_allclose(np.asarray(out.pooled_logits)[b, :n], expect[:n], rtol=1e-4, atol=1e-5)
