"""TaskEmb's Fisher of the QA / multiple-choice losses (#30 'Everywhere'): the diagonal Fisher of a run with a
span_qa and a multiple_choice task equals the squared per-example gradients of those heads' losses averaged
(a Python loop of jax.grad, tests/test_taskemb_fisher.py's reference); sampled labels are refused in one line
(they would be drawn from the pooled logits, which these heads do not use)."""

import dataclasses

import jax
import numpy as np
import pytest

from mtl_jax.models.multitask import build_model
from mtl_jax.taskemb import fisher
from tests.helpers import TINY, fixed_batch
from tests.test_taskemb_fisher import _slow_param_fisher

KINDS = ("span_qa", "multiple_choice")
NUM_CLASSES = (2, 4)


def _batch():
  batch = fixed_batch(batch_size=6, length=10, num_tasks=2, seed=4)
  real = batch["input_mask"].sum(1)
  rng = np.random.default_rng(0)
  qa = batch["task_id"] == 0
  # QA rows: start <= end inside the row (one a null answer at 0 / 0); MC rows: 2-3 choices tagged, a label among them
  start = np.array([rng.integers(0, r) for r in real])
  batch["label"] = np.where(qa, start, 0).astype(np.int32)
  batch["score"] = np.where(qa, [rng.integers(s, r) for s, r in zip(start, real)], 0).astype(np.float32)
  batch["label"][0] = batch["score"][0] = 0
  for i in np.flatnonzero(~qa):
    k = 2 + i % 2
    batch["tags"][i, 1:1 + k] = np.arange(k)
    batch["label"][i] = i % k
  return batch


def test_fisher_of_qa_and_choice_losses_equals_squared_per_example_grads(monkeypatch):
  import tests.test_taskemb_fisher as reference
  model = build_model(dataclasses.replace(TINY, dropout_rate=0.0), "hard", NUM_CLASSES)
  batch = _batch()
  import flax.linen as nn
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(1), batch)["params"])
  monkeypatch.setattr(reference, "KINDS", KINDS)  # the reference's loss over these head kinds
  want = _slow_param_fisher(model, params, batch, "trunk")
  got = fisher.diagonal_fisher(fisher.FisherSpec(model, KINDS, params="trunk", activations=False), params, [batch])
  assert sorted(got["params"]) == sorted(want) and got["examples"] == 6.0
  for path in want:
    np.testing.assert_allclose(got["params"][path], want[path], rtol=2e-4, atol=1e-9, err_msg=path)
  assert fisher.flat_vector(got["params"]).max() > 0
  spec = fisher.FisherSpec(model, KINDS, params="trunk", activations=False, labels="sampled")
  with pytest.raises(ValueError, match=r"^TaskEmb labels='sampled' covers classification / regression tasks"):
    fisher.diagonal_fisher(spec, params, [batch])
