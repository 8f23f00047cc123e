"""Shared builders for in-process model tests: a tiny model on a fixed random batch."""

import jax
import numpy as np
import optax

from mtl_jax.scale import partitioning
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.models.multitask import build_model
from mtl_jax.step.steps import Steps

TINY = EncoderConfig(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, max_len=64, vocab_size=50)
KINDS = ("classification", "regression", "classification")
NUM_CLASSES = (3, 1, 2)


def fixed_batch(batch_size=16, length=12, num_tasks=3, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, length + 1, size=batch_size)
  mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
  task_id = (np.arange(batch_size) % num_tasks).astype(np.int32)
  return {
      "input_ids": (rng.integers(1, TINY.vocab_size, size=(batch_size, length)) * mask).astype(np.int32),
      "input_mask": mask,
      "task_id": task_id,
      "label": rng.integers(0, 2, size=batch_size).astype(np.int32),
      "score": rng.normal(size=batch_size).astype(np.float32),
      "tags": np.full((batch_size, length), -1, np.int32),
      "weight": np.ones(batch_size, np.float32),
  }


def tiny_steps(sharing="hard", kinds=KINDS, num_classes=NUM_CLASSES, mesh=None, lr=3e-3,
               batch_size=16, length=12, seed=0, config=TINY):
  mesh = mesh or partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  model = build_model(config, sharing, num_classes)
  tx = optax.adam(lr)
  return Steps(model, tx, kinds, mesh, partitioning.logical_axis_rules(), seed, batch_size, length)
