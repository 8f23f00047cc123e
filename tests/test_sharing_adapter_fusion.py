"""AdapterFusion: the forward equals a numpy reference of Pfeiffer et al.'s attention over every task's adapter,
grouped == mixed, the learned prior goes to mixing_weights.json and mtl-compare's T x T heatmap, the measured
attention equals the numpy softmax averaged per task (padding excluded) and reaches mixing_weights.json, the
trunk stays bit-identical in joint training, and stage 2 (adapters from an adapters run, frozen) runs through
the binary with the source's adapters kept bit-identical."""

import json

import flax
import flax.linen as nn
import jax
import numpy as np
import pytest

from mtl_jax import train
from mtl_jax.compare import plots
from mtl_jax.models.encoder import Mlp, SelfAttention
from mtl_jax.sharing import adapter_fusion, inspect as sharing_inspect
from mtl_jax.sharing.adapter_fusion import AdapterFusion
from mtl_jax.transfer import init_from
from tests import peft_helpers as ph
from tests.test_sharing_adapters import np_layer_norm
from conftest import ONE_DEVICE


def np_fusion(ap, fp, z_in, task_id, exact):
  """Per example b (task t): z_s = h + bottleneck_s(h) for EVERY task s; a = softmax_s(h Q_t . z_s K_t / sqrt(D)
  + prior_t,s); out = sum_s a_s z_s V_t."""
  gelu = ph.gelu_exact if exact else ph.gelu_tanh
  hidden = gelu(np.einsum("bld,sdm->blsm", z_in, ap["mlp_down_kernel"]) + ap["mlp_down_bias"][None, None])
  z = z_in[:, :, None] + np.einsum("blsm,smd->blsd", hidden, ap["mlp_up_kernel"]) + ap["mlp_up_bias"][None, None]
  out, attention = np.zeros_like(z_in), np.zeros(z.shape[:3])
  for b, t in enumerate(task_id):
    q = z_in[b] @ fp["mlp_query"][t]                                   # [L, D]
    k = np.einsum("lsd,de->lse", z[b], fp["mlp_key"][t])
    v = np.einsum("lsd,de->lse", z[b], fp["mlp_value"][t])
    logits = np.einsum("le,lse->ls", q, k) / np.sqrt(z_in.shape[-1]) + fp["mlp_prior"][t]
    a = np.exp(logits - logits.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    out[b], attention[b] = np.einsum("ls,lse->le", a, v), a
  return out, attention


def reference(params, cfg, x, mask, task_id):
  """(trunk output, [per layer: fusion attention [B, L, T]])."""
  h, task_id, eps, attentions = np.asarray(x, np.float64), np.asarray(task_id), cfg.layer_norm_eps, []
  for k in range(cfg.num_layers):
    lp = params[f"layer_{k}"]
    ap, fp = (jax.tree.map(lambda a: np.asarray(a, np.float64), params[f"{n}_{k}"]) for n in ("adapter", "fusion"))
    attn = np.asarray(SelfAttention(cfg).apply({"params": lp["attention"]}, h.astype(np.float32), mask, True),
                      np.float64)
    h = np_layer_norm(h + attn, lp["ln_attention"], eps)
    mlp = np.asarray(Mlp(cfg).apply({"params": lp["mlp"]}, h.astype(np.float32), True), np.float64)
    fused, attention = np_fusion(ap, fp, mlp, task_id, cfg.gelu_exact)
    h = np_layer_norm(h + fused, lp["ln_mlp"], eps)
    attentions.append(attention)
  return h, attentions


def fusion_params(cfg=ph.BERT):
  strategy = AdapterFusion(cfg, ph.T, size=5)
  params = ph.randomize(ph.init(strategy, cfg), r"^(adapter|fusion)_\d+/\w+_(up_kernel|up_bias|prior|query|key)$",
                        scale=0.5)
  return strategy, params


def test_forward_matches_numpy_reference_and_grouped_equals_mixed():
  strategy, params = fusion_params()
  x, mask, task_id = ph.inputs(ph.BERT)
  mixed = ph.apply(strategy, params, x, mask, task_id)
  np.testing.assert_allclose(mixed, reference(params, ph.BERT, x, mask, task_id)[0], rtol=1e-4, atol=1e-4)
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


class _OnEmbeddings:
  """A model whose batch holds the trunk input 'x' directly, so the numpy reference sees the same h."""

  def __init__(self, strategy):
    self.strategy, self.num_classes = strategy, (2,) * ph.T

  def apply(self, variables, batch, deterministic, mutable):
    return self.strategy.apply(variables, batch["x"], batch["input_mask"], batch["task_id"], deterministic,
                               mutable=mutable)


def test_measured_attention_equals_numpy_softmax_averaged_per_task_without_padding():
  strategy, params = fusion_params()
  x, mask, task_id = (np.asarray(a) for a in ph.inputs(ph.BERT))  # 9 rows, tasks 0 2 1 0 2 1 ..., row 2 padded
  task_id = np.where(task_id == 1, 0, task_id).astype(np.int32)    # task 1 absent
  weight = np.ones(len(task_id), np.float32)
  weight[3] = 0.0                                                  # a padding row (task 0): excluded
  batch = {"x": x, "input_mask": mask, "task_id": task_id, "weight": weight}
  halves = [{k: v[:5] for k, v in batch.items()}, {k: v[5:] for k, v in batch.items()}]  # sums add up
  sums = jax.jit(lambda p, b: adapter_fusion.attention_sums(_OnEmbeddings(strategy), p, b))
  got = adapter_fusion.measured_attention(halves, lambda b: sums(params, b))
  assert sorted(got) == [f"adapter_fusion/attention/layer_{k}" for k in range(ph.BERT.num_layers)]
  _, attentions = reference(params, ph.BERT, x, mask, task_id)
  for k, a_BLS in enumerate(attentions):
    want = np.zeros((ph.T, ph.T))
    for t in (0, 2):
      rows = [b for b in range(len(task_id)) if task_id[b] == t and weight[b] > 0]
      want[t] = np.mean([a_BLS[b][mask[b] > 0].mean(0) for b in rows], axis=0)
    np.testing.assert_allclose(got[f"adapter_fusion/attention/layer_{k}"], want, rtol=1e-4, atol=1e-5)
    assert np.abs(want[0] - want[2]).max() > 1e-3  # each task reads with its own fusion weights
    np.testing.assert_allclose(np.asarray(got[f"adapter_fusion/attention/layer_{k}"])[[0, 2]].sum(-1), 1.0,
                               rtol=1e-5)


def test_measured_attention_goes_to_mixing_weights_and_its_heatmap(tmp_path):
  weights = {"adapter_fusion/alpha/layer_0": np.eye(3).tolist(),
             "adapter_fusion/attention/layer_0": np.full((3, 3), 1 / 3).tolist()}
  path = plots.alpha_heatmaps(weights, "adapter_fusion", ["a", "b", "c"], "fusion", tmp_path / "a.png",
                              what="attention")
  assert path and (tmp_path / "a.png").stat().st_size > 1000
  assert plots.alpha_heatmaps({k: v for k, v in weights.items() if "alpha" in k}, "adapter_fusion", ["a", "b", "c"],
                              "fusion", tmp_path / "b.png", what="attention") is None


def test_fusion_heatmaps_are_coloured_around_uniform(tmp_path, monkeypatch):
  """Fusion rows are softmaxes over T adapters: colour the difference from 1/T, not from 0 (where every
  near-uniform row came out the same dark red); alphas stay centred on 0."""
  from matplotlib.figure import Figure
  near_uniform = np.array([[0.31, 0.33, 0.36], [0.34, 0.33, 0.33], [0.30, 0.35, 0.35]])
  image = plots._heatmap(Figure().add_subplot(1, 1, 1), near_uniform, list("abc"), list("abc"), "t", center=1 / 3)
  spread = 1 / 3 - 0.30  # the farthest entry from uniform
  assert image.norm.vmin == pytest.approx(0.30) and image.norm.vmax == pytest.approx(1 / 3 + spread)
  scales = []
  real = plots._heatmap
  monkeypatch.setattr(plots, "_heatmap", lambda *a, **k: scales.append((k["center"], k["spread"])) or real(*a, **k))
  flat_layer = np.full((3, 3), 1 / 3) + np.array([0.01, -0.01, 0.0])  # barely off uniform
  plots.alpha_heatmaps({"adapter_fusion/attention/layer_0": near_uniform.tolist(),
                        "adapter_fusion/attention/layer_1": flat_layer.tolist()}, "adapter_fusion", list("abc"),
                       "f", tmp_path / "f.png", what="attention")
  plots.alpha_heatmaps({"sluice/alpha/layer_0": near_uniform.tolist()}, "sluice", list("abc"), "s", tmp_path / "s.png")
  # both fusion layers on one scale (the flat one is not stretched to full colour), sluice around 0
  assert scales == [(pytest.approx(1 / 3), pytest.approx(spread))] * 2 + [(0.0, pytest.approx(0.36))]


def test_trunk_stays_bit_identical_in_joint_training():
  ph.check_frozen_training("adapter_fusion", ["trunk/adapter_0/", "trunk/fusion_0/", "trunk/fusion_1/", "heads/"])


def test_bad_settings_name_the_value():
  with pytest.raises(ValueError, match=r"adapter_fusion.placement=\['x'\]"):
    adapter_fusion.adapter_fusion(ph.PRE, 2, placement=["x"])
  with pytest.raises(ValueError, match=r"adapter_fusion.adapters_from=3 must be"):
    adapter_fusion.adapter_fusion(ph.PRE, 2, adapters_from=3)


BASE = ["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.BATCH_SIZE=24", "--gin.TRAIN_STEPS=2",
        "--gin.trainer.train.eval_batch_size=512", ONE_DEVICE]


def _flat(model_dir):
  return flax.traverse_util.flatten_dict(nn.meta.unbox(init_from.restore_params(model_dir)[0]), sep="/")


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
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
  assert sorted(weights) == ["adapter_fusion/alpha/layer_0", "adapter_fusion/alpha/layer_1",
                             "adapter_fusion/attention/layer_0", "adapter_fusion/attention/layer_1"]
  assert np.asarray(weights["adapter_fusion/alpha/layer_0"]).shape == (3, 3)
  measured = np.asarray(weights["adapter_fusion/attention/layer_1"])  # every task has validation examples
  assert measured.shape == (3, 3) and np.allclose(measured.sum(-1), 1.0, atol=1e-5)
  with pytest.raises(ValueError, match="is a 'adapter_fusion' run"):
    adapter_fusion._trained_adapters(str(fused))
