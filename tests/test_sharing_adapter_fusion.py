"""AdapterFusion: the forward equals a numpy reference of Pfeiffer et al.'s attention over every task's adapter,
grouped == mixed, the learned prior goes to mixing_weights.json and mtl-compare's T x T heatmap, the measured
attention is a distribution per task, the trunk stays bit-identical in joint training, and stage 2 (adapters
from an adapters run, frozen) runs through the binary with the source's adapters kept bit-identical."""

import json

import flax
import flax.linen as nn
import jax
import numpy as np
import pytest

from mtl_jax import train
from mtl_jax.compare import plots
from mtl_jax.models.encoder import Mlp, SelfAttention
from mtl_jax.models.multitask import build_model
from mtl_jax.sharing import adapter_fusion, inspect as sharing_inspect
from mtl_jax.sharing.adapter_fusion import AdapterFusion
from mtl_jax.transfer import init_from
from tests import peft_helpers as ph
from tests.test_sharing_adapters import np_layer_norm


def np_fusion(ap, fp, z_in, task_id, exact):
  """Per example b (task t): z_s = h + bottleneck_s(h) for EVERY task s; a = softmax_s(h Q_t . z_s K_t / sqrt(D)
  + prior_t,s); out = sum_s a_s z_s V_t."""
  gelu = ph.gelu_exact if exact else ph.gelu_tanh
  hidden = gelu(np.einsum("bld,sdm->blsm", z_in, ap["mlp_down_kernel"]) + ap["mlp_down_bias"][None, None])
  z = z_in[:, :, None] + np.einsum("blsm,smd->blsd", hidden, ap["mlp_up_kernel"]) + ap["mlp_up_bias"][None, None]
  out = np.zeros_like(z_in)
  for b, t in enumerate(task_id):
    q = z_in[b] @ fp["mlp_query"][t]                                   # [L, D]
    k = np.einsum("lsd,de->lse", z[b], fp["mlp_key"][t])
    v = np.einsum("lsd,de->lse", z[b], fp["mlp_value"][t])
    logits = np.einsum("le,lse->ls", q, k) / np.sqrt(z_in.shape[-1]) + fp["mlp_prior"][t]
    a = np.exp(logits - logits.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    out[b] = np.einsum("ls,lse->le", a, v)
  return out


def reference(params, cfg, x, mask, task_id):
  h, task_id, eps = np.asarray(x, np.float64), np.asarray(task_id), cfg.layer_norm_eps
  for k in range(cfg.num_layers):
    lp = params[f"layer_{k}"]
    ap, fp = (jax.tree.map(lambda a: np.asarray(a, np.float64), params[f"{n}_{k}"]) for n in ("adapter", "fusion"))
    attn = np.asarray(SelfAttention(cfg).apply({"params": lp["attention"]}, h.astype(np.float32), mask, True),
                      np.float64)
    h = np_layer_norm(h + attn, lp["ln_attention"], eps)
    mlp = np.asarray(Mlp(cfg).apply({"params": lp["mlp"]}, h.astype(np.float32), True), np.float64)
    h = np_layer_norm(h + np_fusion(ap, fp, mlp, task_id, cfg.gelu_exact), lp["ln_mlp"], eps)
  return h


def fusion_params(cfg=ph.BERT):
  strategy = AdapterFusion(cfg, ph.T, size=5)
  params = ph.randomize(ph.init(strategy, cfg), r"^(adapter|fusion)_\d+/\w+_(up_kernel|up_bias|prior|query|key)$",
                        scale=0.5)
  return strategy, params


def test_forward_matches_numpy_reference_and_grouped_equals_mixed():
  strategy, params = fusion_params()
  x, mask, task_id = ph.inputs(ph.BERT)
  mixed = ph.apply(strategy, params, x, mask, task_id)
  np.testing.assert_allclose(mixed, reference(params, ph.BERT, x, mask, task_id), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ph.apply(strategy, params, x, mask, task_id, grouped=True), mixed, rtol=1e-5, atol=1e-5)


def test_prior_goes_to_mixing_weights_and_the_heatmap(tmp_path):
  _, params = fusion_params()
  weights = sharing_inspect.mixing_weights({"trunk": params})
  for k in range(ph.BERT.num_layers):
    prior = params[f"fusion_{k}"]["mlp_prior"].astype(np.float64)
    want = np.exp(prior) / np.exp(prior).sum(-1, keepdims=True)
    np.testing.assert_allclose(weights[f"adapter_fusion/alpha/layer_{k}"], want, rtol=1e-10)
  path = plots.alpha_heatmaps(weights, "adapter_fusion", ["a", "b", "c"], "fusion", tmp_path / "fusion.png")
  assert path and (tmp_path / "fusion.png").stat().st_size > 1000


def test_measured_attention_is_a_distribution_per_task():
  cfg = ph.BERT
  model = build_model(cfg, "adapter_fusion", (2, 3, 1))
  batch = {"input_ids": np.arange(1, 25, dtype=np.int32).reshape(4, 6) % 50, "input_mask": np.ones((4, 6), np.int32),
           "task_id": np.array([0, 1, 0, 1], np.int32)}  # task 2 absent
  params = nn.meta.unbox(model.init(jax.random.key(0), batch)["params"])
  params = {**params, "trunk": ph.randomize(jax.device_get(params["trunk"]), r"^fusion_\d+/mlp_(prior|query|key)$")}
  got = adapter_fusion.measured_attention(model, params, batch)
  assert sorted(got) == [f"adapter_fusion/attention/layer_{k}" for k in range(cfg.num_layers)]
  a = np.asarray(got["adapter_fusion/attention/layer_1"])
  np.testing.assert_allclose(a[:2].sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(a[2], 0.0)
  assert np.abs(a[0] - a[1]).max() > 1e-4  # each task reads with its own fusion weights


def test_trunk_stays_bit_identical_in_joint_training():
  ph.check_frozen_training("adapter_fusion", ["trunk/adapter_0/", "trunk/fusion_0/", "trunk/fusion_1/", "heads/"])


def test_bad_settings_name_the_value():
  with pytest.raises(ValueError, match=r"adapter_fusion.placement=\['x'\]"):
    adapter_fusion.adapter_fusion(ph.PRE, 2, placement=["x"])
  with pytest.raises(ValueError, match=r"adapter_fusion.adapters_from=3 must be"):
    adapter_fusion.adapter_fusion(ph.PRE, 2, adapters_from=3)


BASE = ["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.BATCH_SIZE=24", "--gin.TRAIN_STEPS=2",
        "--gin.trainer.train.eval_batch_size=512"]


def _flat(model_dir):
  return flax.traverse_util.flatten_dict(nn.meta.unbox(init_from.restore_params(model_dir)[0]), sep="/")


def test_stage_two_from_an_adapters_run_through_the_binary(tmp_path):
  source, fused = tmp_path / "adapters", tmp_path / "fusion"
  assert train.main([*BASE, "--gin_file=gin/sharing/adapters.gin", "--gin.adapters.placement=['mlp']",
                     f"--gin.MODEL_DIR={source}"]) == 0
  assert train.main([*BASE, "--gin_file=gin/sharing/adapter_fusion_stage2.gin",
                     f"--gin.adapter_fusion.adapters_from='{source}'", f"--gin.MODEL_DIR={fused}"]) == 0
  src, out = _flat(source), _flat(fused)
  adapters = [p for p in src if p.startswith("trunk/adapter_")]
  assert adapters and all(p in out for p in adapters)
  for p in adapters:  # loaded from the source and frozen
    np.testing.assert_array_equal(np.asarray(out[p]), np.asarray(src[p]), err_msg=p)
  weights = json.loads((fused / "mixing_weights.json").read_text())
  assert sorted(weights) == ["adapter_fusion/alpha/layer_0", "adapter_fusion/alpha/layer_1"]
  assert np.asarray(weights["adapter_fusion/alpha/layer_0"]).shape == (3, 3)
  with pytest.raises(ValueError, match="is a 'adapter_fusion' run"):
    adapter_fusion._trained_adapters(str(fused))
