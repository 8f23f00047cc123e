"""Per-task LoRA: the forward equals the plain encoder run with W + (alpha/r) A_t B_t (merged by numpy here),
grouped == mixed, the merge step (lora_merge) reproduces the unmerged forward and exports in HF layout
(W_hf + (alpha/r) B_hf A_hf), the trunk stays bit-identical in training, and the binary trains it."""

import json

import flax
import flax.linen as nn
import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from mtl_jax import sharing, train
from mtl_jax.models.encoder import Embedder, LayerStack
from mtl_jax.models.multitask import build_model
from mtl_jax.pretrained import export, lora_merge
from mtl_jax.sharing.lora import LoraSharing
from tests import peft_helpers as ph
from conftest import ONE_DEVICE

ALL = ("query", "key", "value", "out", "wi", "wo")
KERNEL = {"query": ("attention", "query_kernel"), "key": ("attention", "key_kernel"),
          "value": ("attention", "value_kernel"), "out": ("attention", "out_kernel"),
          "wi": ("mlp", "wi", "kernel"), "wo": ("mlp", "wo", "kernel")}


def np_merged_layers(params, cfg, task, scale, targets):
  """Task `task`'s plain encoder layers: each target kernel + scale * A_t @ B_t (float64, in numpy)."""
  layers = {}
  for k in range(cfg.num_layers):
    layer = jax.tree.map(np.asarray, params[f"layer_{k}"])
    for t in targets:
      *where, leaf = KERNEL[t]
      holder = layer
      for w in where:
        holder = holder[w]
      a, b = params[f"lora_{k}"][f"{t}_a"][task], params[f"lora_{k}"][f"{t}_b"][task]
      w = holder[leaf]
      holder[leaf] = (w + scale * (a.astype(np.float64) @ b).reshape(w.shape)).astype(np.float32)
    layers[f"layer_{k}"] = layer
  return layers


def lora_model(cfg, targets=ALL, rank=3, alpha=6.0):
  strategy = LoraSharing(cfg, ph.T, rank=rank, alpha=alpha, targets=targets)
  params = ph.randomize(ph.init(strategy, cfg), r"^lora_\d+/\w+_b$")  # B starts at 0
  return strategy, params


@pytest.mark.parametrize("cfg", [ph.BERT, ph.PRE], ids=["post_ln", "pre_ln"])
def test_forward_is_the_plain_encoder_with_merged_weights(cfg):
  strategy, params = lora_model(cfg)
  x, mask, task_id = ph.inputs(cfg)
  mixed = ph.apply(strategy, params, x, mask, task_id)
  np.testing.assert_allclose(ph.apply(strategy, params, x, mask, task_id, grouped=True), mixed, rtol=1e-5, atol=1e-5)
  for t in range(ph.T):
    merged = np_merged_layers(params, cfg, t, 6.0 / 3, ALL)
    if cfg.norm == "pre":
      merged["ln_final"] = params["ln_final"]
    from mtl_jax.sharing.towers import Tower
    want = np.asarray(Tower(cfg).apply({"params": {"layers": {k: v for k, v in merged.items() if k != "ln_final"},
                                                   **({"ln_final": merged["ln_final"]} if "ln_final" in merged
                                                      else {})}}, x, mask, True))
    rows = np.asarray(task_id) == t
    np.testing.assert_allclose(mixed[rows], want[rows], rtol=1e-4, atol=1e-4)


def test_delta_is_scaled_low_rank_product():
  """Only the targets change; the change of one projection is exactly (alpha/r) x A B (numpy)."""
  cfg = ph.BERT
  strategy, params = lora_model(cfg, targets=("value",), rank=2, alpha=8.0)
  x, mask, task_id = ph.inputs(cfg)
  zero_b = ph.randomize(params, r"^$")  # a copy
  zero_b["lora_0"]["value_b"] = np.zeros_like(params["lora_0"]["value_b"])
  zero_b["lora_1"]["value_b"] = np.zeros_like(params["lora_1"]["value_b"])
  plain = LayerStack(cfg).apply({"params": {k: v for k, v in params.items() if k.startswith("layer_")}}, x, mask,
                                True)[-1]
  np.testing.assert_allclose(ph.apply(strategy, zero_b, x, mask, task_id), np.asarray(plain), rtol=1e-6, atol=1e-6)
  a, b = params["lora_0"]["value_a"], params["lora_0"]["value_b"]
  merged = np_merged_layers(params, cfg, 1, 4.0, ("value",))
  w0 = np.asarray(params["layer_0"]["attention"]["value_kernel"]).reshape(cfg.d_model, -1)
  np.testing.assert_allclose(merged["layer_0"]["attention"]["value_kernel"].reshape(cfg.d_model, -1) - w0,
                             4.0 * a[1] @ b[1], rtol=1e-5, atol=1e-6)


def _model_params(cfg, seed=0):
  model = build_model(cfg, "lora", (2, 3, 1))
  batch = {"input_ids": np.arange(1, 19, dtype=np.int32).reshape(3, 6), "input_mask": np.ones((3, 6), np.int32),
           "task_id": np.array([0, 1, 2], np.int32)}
  params = jax.device_get(nn.meta.unbox(model.init(jax.random.key(seed), batch)["params"]))
  params = {**params, "trunk": ph.randomize(params["trunk"], r"^lora_\d+/\w+_b$")}
  return model, params, batch


def test_merge_equals_the_unmerged_forward_and_exports_in_hf_layout(tmp_path):
  cfg = ph.BERT
  model, params, batch = _model_params(cfg)
  x = Embedder(cfg).apply({"params": params["embedder"]}, batch["input_ids"])
  unmerged = np.asarray(model.trunk.apply({"params": params["trunk"]}, x, batch["input_mask"], batch["task_id"]))
  alpha = 16.0  # lora's default (rank 8)
  for task in range(3):
    merged = lora_merge.merged_params(params, task, alpha)
    assert not any("lora_" in p for p in flax.traverse_util.flatten_dict(merged, sep="/"))
    layers = {k: v for k, v in merged["trunk"].items() if k.startswith("layer_")}
    plain = np.asarray(LayerStack(cfg).apply({"params": layers}, x, batch["input_mask"], True)[-1])
    np.testing.assert_allclose(plain[task], unmerged[task], rtol=1e-4, atol=1e-4)  # example `task` is of task `task`
    assert np.abs(plain[(task + 1) % 3] - unmerged[(task + 1) % 3]).max() > 1e-3  # another task's LoRA differs
  # HF layout: W_hf' = W_hf + (alpha / r) B_hf A_hf with A_hf = A^T [r, in], B_hf = B^T [out, r]
  out = export.export_params(lora_merge.merged_params(params, 2, alpha), cfg, tmp_path / "hf")
  tensors = load_file(str(out / "model.safetensors"))
  w = np.asarray(params["trunk"]["layer_1"]["attention"]["query_kernel"]).reshape(cfg.d_model, -1).T  # [out, in]
  a_hf = params["trunk"]["lora_1"]["query_a"][2].T
  b_hf = params["trunk"]["lora_1"]["query_b"][2].T
  np.testing.assert_allclose(tensors["encoder.layer.1.attention.self.query.weight"], w + (alpha / 8) * b_hf @ a_hf,
                             rtol=1e-5, atol=1e-6)
  assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == cfg.num_layers


def test_trunk_stays_bit_identical_while_lora_trains():
  ph.check_frozen_training("lora", ["trunk/lora_0/", "trunk/lora_1/", "heads/"])


def test_bad_settings_name_the_value():
  with pytest.raises(ValueError, match=r"lora.rank=0 must be a positive int"):
    sharing.lora.lora(ph.PRE, 2, rank=0)
  with pytest.raises(ValueError, match=r"lora.targets=\['q'\]"):
    sharing.lora.lora(ph.PRE, 2, targets=["q"])
  with pytest.raises(ValueError, match=r"no lora_\{k\}/ factors"):
    lora_merge.merged_params({"trunk": {"layer_0": {"w": np.zeros(2)}}}, 0, 16.0)


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_lora_trains_through_the_binary_and_merge_refuses_a_scratch_trunk(tmp_path, capsys):
  model_dir = tmp_path / "lora"
  assert train.main(["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
                     "--gin_file=gin/sharing/lora.gin", "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}",
                     "--gin.BATCH_SIZE=24", "--gin.TRAIN_STEPS=2", "--gin.trainer.train.eval_batch_size=512",
                     "--gin.lora.alpha=4.0", f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE]) == 0
  start = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mtl_jax: sharing="))
  assert start.startswith("mtl_jax: sharing=lora tasks=3") and " trainable=" in start
  assert lora_merge.run_alpha(model_dir) == 4.0
  assert lora_merge.main(["--model_dir", str(model_dir), "--task", "bbc_topic", "--output", str(tmp_path / "o")]) == 2
  assert "only checkpoint-architecture trunks export" in capsys.readouterr().err
