"""TaskEmb's diagonal Fisher = squared per-example jax.grad averaged, computed the slow way."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from mtl_jax.step import losses
from mtl_jax.models.multitask import build_model
from mtl_jax.taskemb import fisher
from tests.helpers import KINDS, NUM_CLASSES, TINY, fixed_batch

CONFIG = dataclasses.replace(TINY, dropout_rate=0.0)


def _model_and_params(config=CONFIG):
  model = build_model(config, "hard", NUM_CLASSES)
  batch = fixed_batch(batch_size=6, length=10)
  params = jax.jit(model.init)(jax.random.key(1), batch)["params"]
  import flax.linen as nn
  return model, nn.meta.unbox(params), batch


def _slow_param_fisher(model, params, batch, which):
  """A Python loop over examples: jax.grad of each example's loss, squared, weighted mean."""
  totals, n = {}, 0.0
  # one example's gradient, jitted once and called per example (the loop stays in Python)
  grad = jax.jit(jax.grad(lambda p, one: losses.example_losses(model.apply({"params": p}, one, deterministic=True),
                                                                one, KINDS)[0]))
  for i in range(len(batch["weight"])):
    one = {k: v[i:i + 1] for k, v in batch.items()}
    g = traverse_util.flatten_dict(grad(params, one), sep="/")
    w = float(batch["weight"][i])
    for path, value in g.items():
      if fisher.selected(path, which):
        totals[path] = totals.get(path, 0.0) + w * np.asarray(value, np.float64) ** 2
    n += w
  return {p: v / n for p, v in totals.items()}


@pytest.mark.parametrize("which", ["trunk", "all"])
def test_param_fisher_equals_squared_per_example_grads_averaged(which):
  model, params, batch = _model_and_params()
  batch["weight"][-1] = 0.0  # a padding row counts for nothing
  spec = fisher.FisherSpec(model, KINDS, params=which, activations=False)
  halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]  # two batches, one pass
  got = fisher.diagonal_fisher(spec, params, halves)
  want = _slow_param_fisher(model, params, batch, which)
  assert got["examples"] == 5.0 and got["activations"] is None
  assert sorted(got["params"]) == sorted(want)
  assert any(p.startswith("embedder/") for p in want) == (which == "all")
  assert not any(p.startswith("heads/") for p in want)
  for path in want:
    np.testing.assert_allclose(got["params"][path], want[path], rtol=2e-4, atol=1e-9, err_msg=path)
  vec = fisher.flat_vector(got["params"])
  assert vec.shape == (sum(v.size for v in want.values()),) and vec.min() >= 0 and vec.max() > 0


def test_last_layer_activation_fisher_equals_the_rep_gradient_the_slow_way():
  """Post-LN trunk: the last layer's output is what the heads read, i.e. the model's 'rep' perturbation."""
  config = dataclasses.replace(CONFIG, norm="post")
  model, params, batch = _model_and_params(config)
  spec = fisher.FisherSpec(model, KINDS, params="none", activations=True, num_layers=config.num_layers,
                           d_model=config.d_model)
  got = fisher.diagonal_fisher(spec, params, [batch])["activations"]
  assert got.shape == (config.num_layers, config.d_model)
  want, n = np.zeros(config.d_model), len(batch["weight"])
  rep_grad = jax.jit(jax.grad(lambda r, one: losses.example_losses(
      model.apply({"params": params, "perturbations": {"rep": r}}, one, deterministic=True), one, KINDS)[0]))
  for i in range(n):
    one = {k: v[i:i + 1] for k, v in batch.items()}
    rep = jnp.zeros((1, one["input_ids"].shape[1], config.d_model))
    g2 = np.asarray(rep_grad(rep, one)[0], np.float64) ** 2  # [L, D]
    mask = one["input_mask"][0].astype(bool)
    want += g2[mask].mean(axis=0)
  np.testing.assert_allclose(got[-1], want / n, rtol=2e-4, atol=1e-10)
  assert np.all(got[0] > 0)  # earlier layers get gradients too


def test_sampled_labels_change_the_fisher_and_bad_options_are_one_line():
  model, params, batch = _model_and_params()
  spec = fisher.FisherSpec(model, KINDS, params="trunk", activations=False, labels="sampled")
  sampled = fisher.flat_vector(fisher.diagonal_fisher(spec, params, [batch], seed=3)["params"])
  again = fisher.flat_vector(fisher.diagonal_fisher(spec, params, [batch], seed=3)["params"])
  gold = fisher.flat_vector(fisher.diagonal_fisher(dataclasses.replace(spec, labels="labels"), params, [batch])["params"])
  np.testing.assert_array_equal(sampled, again)
  assert not np.allclose(sampled, gold) and sampled.max() > 0
  with pytest.raises(ValueError, match="labels='gold'"):
    fisher.FisherSpec(model, KINDS, labels="gold")
  with pytest.raises(ValueError, match="nothing to measure"):
    fisher.FisherSpec(model, KINDS, params="none", activations=False)
