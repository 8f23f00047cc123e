"""TaskEmb's diagonal Fisher per component, against slow references written from the paper's equations.

The references never use fisher.py's perturbations: parameter gradients come from a Python loop of
jax.grad per example, and the activation statistics from an identity of the post-LN layer: a bias added
to every token of a tensor has as gradient the gradient summed over the tokens, so
  (sum_l dL/dh_k[l])^2 / L_n  =  (dL/d ln_mlp.bias of layer k)^2 / L_n            layer outputs
  (sum_l dL/da_k[l])^2 / L_n  =  (dL/d attention.out_bias of layer k)^2 / L_n      attention outputs
which is Vu et al.'s released statistic (run_taskemb_CR.compute_Fisher, batch size 1).
"""

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
POST = dataclasses.replace(CONFIG, norm="post")


def _model_and_params(config=CONFIG):
  model = build_model(config, "hard", NUM_CLASSES)
  batch = fixed_batch(batch_size=6, length=10)
  params = jax.jit(model.init)(jax.random.key(1), batch)["params"]
  import flax.linen as nn
  return model, nn.meta.unbox(params), batch


def _per_example_grads(model, params, batch):
  """[flat {path: grad}] per example: jax.grad of each example's own loss (a Python loop)."""
  grad = jax.jit(jax.grad(lambda p, one: losses.example_losses(model.apply({"params": p}, one, deterministic=True),
                                                                one, KINDS)[0]))
  return [{k: np.asarray(v, np.float64) for k, v in traverse_util.flatten_dict(
      grad(params, {k: v[i:i + 1] for k, v in batch.items()}), sep="/").items()} for i in range(len(batch["weight"]))]


def _slow_param_fisher(model, params, batch, which):
  totals, n = {}, 0.0
  for i, g in enumerate(_per_example_grads(model, params, batch)):
    w = float(batch["weight"][i])
    for path, value in g.items():
      if fisher.selected(path, which):
        totals[path] = totals.get(path, 0.0) + w * value ** 2
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
  assert got["examples"] == 5.0 and got["activations"] is None and got["classifier"] == {}
  assert sorted(got["params"]) == sorted(want)
  assert any(p.startswith("embedder/") for p in want) == (which == "all")
  assert not any(p.startswith("heads/") for p in want)
  for path in want:
    np.testing.assert_allclose(got["params"][path], want[path], rtol=2e-4, atol=1e-9, err_msg=path)
  vec = fisher.flat_vector(got["params"])
  assert vec.shape == (sum(v.size for v in want.values()),) and vec.min() >= 0 and vec.max() > 0


def test_sequence_statistic_of_layers_attention_pooled_and_classifier_matches_the_bias_identity():
  """The default ('sequence'): per example the gradient summed over its real tokens, squared, / L_n."""
  model, params, batch = _model_and_params(POST)
  spec = fisher.FisherSpec(model, KINDS, params="none", activations=True, num_layers=POST.num_layers,
                           d_model=POST.d_model, classifier=True, task_index=2)
  assert spec.statistic == "sequence"
  got = fisher.diagonal_fisher(spec, params, [batch])
  grads = _per_example_grads(model, params, batch)
  tokens = batch["input_mask"].sum(1).astype(np.float64)
  k_layers = POST.num_layers
  layers = np.mean([[g[f"trunk/trunk/layer_{k}/ln_mlp/LayerNorm_0/bias"] ** 2 / L for k in range(k_layers)]
                    for g, L in zip(grads, tokens)], axis=0)
  attention = np.mean([[g[f"trunk/trunk/layer_{k}/attention/out_bias"] ** 2 / L for k in range(k_layers)]
                       for g, L in zip(grads, tokens)], axis=0)
  np.testing.assert_allclose(got["activations"], layers, rtol=2e-4, atol=1e-10)
  np.testing.assert_allclose(got["attention"], attention, rtol=2e-4, atol=1e-10)
  # mean pooling of a post-LN trunk: the pooled vector's gradient is the last layer's, summed over tokens
  np.testing.assert_allclose(got["pooled"], layers[-1], rtol=2e-4, atol=1e-10)
  # the classifier component: the task's own head slice (task 2), squared per-example grads averaged
  kernel = np.mean([g["heads/kernel"][2] ** 2 for g in grads], axis=0)
  np.testing.assert_allclose(got["classifier"]["heads/kernel"], kernel, rtol=2e-4, atol=1e-10)
  assert got["classifier"]["heads/bias"].shape == (max(NUM_CLASSES),) and got["params"] == {}
  # the former per-token statistic is a different number (mean_l g_l^2 >= (sum_l g_l)^2 / L^2 ...)
  token = fisher.diagonal_fisher(dataclasses.replace(spec, statistic="token"), params, [batch])
  assert not np.allclose(token["activations"], got["activations"], rtol=1e-2)


def test_token_statistic_is_the_mean_of_per_token_squares_of_the_rep_gradient():
  """'token' (the former default): mean over real tokens of the squared gradient of the last layer's output."""
  model, params, batch = _model_and_params(POST)
  spec = fisher.FisherSpec(model, KINDS, params="none", activations=True, num_layers=POST.num_layers,
                           d_model=POST.d_model, statistic="token")
  got = fisher.diagonal_fisher(spec, params, [batch])["activations"]
  assert got.shape == (POST.num_layers, POST.d_model)
  want, n = np.zeros(POST.d_model), len(batch["weight"])
  rep_grad = jax.jit(jax.grad(lambda r, one: losses.example_losses(
      model.apply({"params": params, "perturbations": {"rep": r}}, one, deterministic=True), one, KINDS)[0]))
  for i in range(n):
    one = {k: v[i:i + 1] for k, v in batch.items()}
    rep = jnp.zeros((1, one["input_ids"].shape[1], POST.d_model))
    g2 = np.asarray(rep_grad(rep, one)[0], np.float64) ** 2  # [L, D]
    mask = one["input_mask"][0].astype(bool)
    want += g2[mask].mean(axis=0)
  np.testing.assert_allclose(got[-1], want / n, rtol=2e-4, atol=1e-10)
  assert np.all(got[0] > 0)  # earlier layers get gradients too


def test_batch_statistic_is_the_released_code_at_its_batch_size():
  """'batch': per batch, (mean_n grad)^2 for params and (sum_{n,l} grad of the batch-mean loss)^2 / batch tokens
  for activations; the batch values summed, divided by all examples (run_taskemb_CR.compute_taskemb)."""
  model, params, batch = _model_and_params(POST)
  batch["weight"][-1] = 0.0
  halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
  spec = fisher.FisherSpec(model, KINDS, params="trunk", activations=True, num_layers=POST.num_layers,
                           d_model=POST.d_model, statistic="batch")
  got = fisher.diagonal_fisher(spec, params, halves)
  grads = _per_example_grads(model, params, batch)
  w, tokens = batch["weight"].astype(np.float64), batch["input_mask"].sum(1).astype(np.float64)
  path, bias = "trunk/trunk/layer_1/mlp/wo/kernel", "trunk/trunk/layer_0/ln_mlp/LayerNorm_0/bias"
  want_p, want_a = 0.0, 0.0
  for rows in (range(0, 4), range(4, 6)):
    real = sum(w[i] for i in rows)
    want_p = want_p + (sum(w[i] * grads[i][path] for i in rows) / real) ** 2
    want_a = want_a + (sum(w[i] * grads[i][bias] for i in rows) / real) ** 2 / sum(w[i] * tokens[i] for i in rows)
  np.testing.assert_allclose(got["params"][path], want_p / 5.0, rtol=2e-4, atol=1e-12)
  np.testing.assert_allclose(got["activations"][0], want_a / 5.0, rtol=2e-4, atol=1e-12)


def test_sampled_labels_change_the_fisher_and_bad_options_are_one_line():
  model, params, batch = _model_and_params()
  spec = fisher.FisherSpec(model, KINDS, params="trunk", activations=False, labels="sampled")
  sampled = fisher.flat_vector(fisher.diagonal_fisher(spec, params, [batch], seed=3)["params"])
  again = fisher.flat_vector(fisher.diagonal_fisher(spec, params, [batch], seed=3)["params"])
  gold_spec = dataclasses.replace(spec, labels="labels")
  gold = fisher.flat_vector(fisher.diagonal_fisher(gold_spec, params, [batch])["params"])
  np.testing.assert_array_equal(sampled, again)
  assert not np.allclose(sampled, gold) and sampled.max() > 0
  with pytest.raises(ValueError, match="labels='gold'"):
    fisher.FisherSpec(model, KINDS, labels="gold")
  with pytest.raises(ValueError, match="statistic='mean'"):
    fisher.FisherSpec(model, KINDS, statistic="mean")
  with pytest.raises(ValueError, match="nothing to measure"):
    fisher.FisherSpec(model, KINDS, params="none", activations=False)


def test_regime_batches_are_the_subset_a_limited_run_trains_on():
  """A target embedded from its own regime sees exactly the N examples train_example_limit draws."""
  import seqio
  import tasks.synthetic_catalogue  # noqa: F401  registers the catalogue
  from mtl_jax.input import input_pipeline
  task = seqio.get_mixture_or_task("syncat_f1_m1")
  got = fisher.regime_batches(task, ["syncat_f1_m1"], 32, 16, limit=40, subset_seed=2)
  rows = [tuple(ids[m > 0]) for b in got for ids, m, w in zip(b["input_ids"], b["input_mask"], b["weight"]) if w > 0]
  trained = input_pipeline._limited_train_dataset(task, {"inputs": 32}, seed=7, limit=40, subset_seed=2,
                                                  shard_info=None).take(40)
  want = [tuple(e["inputs"][e["inputs"] > 0]) for e in trained.as_numpy_iterator()]
  assert len(rows) == 40 and sorted(rows) == sorted(want)
  other = fisher.regime_batches(task, ["syncat_f1_m1"], 32, 16, limit=40, subset_seed=3)
  assert sorted(tuple(i[m > 0]) for b in other for i, m, w in zip(b["input_ids"], b["input_mask"], b["weight"])
                if w > 0) != sorted(want)
