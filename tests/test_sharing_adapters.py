"""Per-task bottleneck adapters: the forward equals an independent numpy composition (encoder's own
attention / MLP + numpy adapters and LayerNorms), grouped == mixed routing, W_up = 0 is exactly the plain
trunk, the trunk stays bit-identical in training, a pretrained checkpoint loads into it, and the binary trains it."""

import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from mtl_jax import sharing, train
from mtl_jax.models.encoder import LayerStack, Mlp, SelfAttention
from mtl_jax.pretrained import checkpoint as checkpoint_lib, load
from tests import peft_helpers as ph
from tests.pretrained_fixtures import write_tiny_checkpoint
from conftest import ONE_DEVICE


def np_layer_norm(x, p, eps):
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p["LayerNorm_0"]["scale"] + p["LayerNorm_0"]["bias"]


def np_adapter(ap, place, z, task_id, exact):
  """z + gelu(z W_down_t + b_down_t) W_up_t + b_up_t, each example with its task t."""
  gelu = ph.gelu_exact if exact else ph.gelu_tanh
  down, up = ap[f"{place}_down_kernel"][task_id], ap[f"{place}_up_kernel"][task_id]
  hidden = gelu(np.einsum("bld,bdm->blm", z, down) + ap[f"{place}_down_bias"][task_id][:, None])
  return z + np.einsum("blm,bmd->bld", hidden, up) + ap[f"{place}_up_bias"][task_id][:, None]


def reference(params, cfg, x, mask, task_id, placement):
  h, task_id, eps = np.asarray(x, np.float64), np.asarray(task_id), cfg.layer_norm_eps
  for k in range(cfg.num_layers):
    lp, ap = params[f"layer_{k}"], jax.tree.map(lambda a: np.asarray(a, np.float64), params[f"adapter_{k}"])
    attn = lambda z: np.asarray(SelfAttention(cfg).apply({"params": lp["attention"]}, z.astype(np.float32), mask,
                                                         True), np.float64)
    mlp = lambda z: np.asarray(Mlp(cfg).apply({"params": lp["mlp"]}, z.astype(np.float32), True), np.float64)
    adapt = lambda place, z: np_adapter(ap, place, z, task_id, cfg.gelu_exact) if place in placement else z
    if cfg.norm == "post":
      h = np_layer_norm(h + adapt("attention", attn(h)), lp["ln_attention"], eps)
      h = np_layer_norm(h + adapt("mlp", mlp(h)), lp["ln_mlp"], eps)
    else:
      h = h + adapt("attention", attn(np_layer_norm(h, lp["ln_attention"], eps)))
      h = h + adapt("mlp", mlp(np_layer_norm(h, lp["ln_mlp"], eps)))
  return np_layer_norm(h, params["ln_final"], eps) if cfg.norm == "pre" else h


@pytest.mark.parametrize("cfg,placement", [(ph.BERT, ("attention", "mlp")), (ph.PRE, ("mlp",))],
                         ids=["post_ln_houlsby", "pre_ln_mlp_only"])
def test_forward_matches_numpy_reference_and_grouped_equals_mixed(cfg, placement):
  strategy = sharing.build("adapters", cfg, ph.T) if placement == ("attention", "mlp") else \
      sharing.adapters.AdapterSharing(cfg, ph.T, size=5, placement=placement)
  params = ph.randomize(ph.init(strategy, cfg), r"^adapter_")  # W_up starts at 0: make every adapter act
  x, mask, task_id = ph.inputs(cfg)
  want = reference(params, cfg, x, mask, task_id, placement)
  mixed = ph.apply(strategy, params, x, mask, task_id)
  np.testing.assert_allclose(mixed, want, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ph.apply(strategy, params, x, mask, task_id, grouped=True), mixed, rtol=1e-5, atol=1e-5)
  # each example really uses its own task's adapter: another task's changes the output
  other = reference(params, cfg, x, mask, (np.asarray(task_id) + 1) % ph.T, placement)
  assert np.abs(other - want).max() > 1e-2


def test_fresh_adapters_are_the_plain_trunk():
  """W_up = 0 at init: the adapters model is exactly encoder.LayerStack with the same layer params."""
  strategy = sharing.build("adapters", ph.BERT, ph.T)
  params = ph.init(strategy, ph.BERT)
  x, mask, task_id = ph.inputs(ph.BERT)
  plain = LayerStack(ph.BERT).apply({"params": {k: v for k, v in params.items() if k.startswith("layer_")}},
                                    x, mask, True)[-1]
  np.testing.assert_array_equal(ph.apply(strategy, params, x, mask, task_id), np.asarray(plain))


def test_trunk_stays_bit_identical_while_adapters_train():
  ph.check_frozen_training("adapters", ["trunk/adapter_0/", "trunk/adapter_1/", "heads/"])


def test_pretrained_checkpoint_fills_the_trunk_and_leaves_adapters_fresh(tmp_path):
  ckpt = checkpoint_lib.open_checkpoint(write_tiny_checkpoint(tmp_path / "bert", d=16, heads=2, ff=24))
  cfg = ckpt.encoder_config(0.0, "mean")
  from mtl_jax.models.multitask import build_model
  model = build_model(cfg, "adapters", (2, 3))
  batch = {"input_ids": np.ones((3, 6), np.int32), "input_mask": np.ones((3, 6), np.int32),
           "task_id": np.array([0, 1, 0], np.int32)}
  params = nn.meta.unbox(model.init(jax.random.key(0), batch)["params"])
  loaded = load.into_params(params, ckpt.params())  # raises if a trunk param had no checkpoint tensor
  tensors = ckpt.params()
  np.testing.assert_array_equal(np.asarray(loaded["trunk"]["layer_1"]["attention"]["query_kernel"]),
                                tensors["layer_1/attention/query_kernel"])
  np.testing.assert_array_equal(np.asarray(loaded["trunk"]["adapter_1"]["mlp_down_kernel"]),
                                np.asarray(params["trunk"]["adapter_1"]["mlp_down_kernel"]))


def test_bad_settings_name_the_value():
  with pytest.raises(ValueError, match=r"adapters.size=0 must be a positive int"):
    sharing.adapters.adapters(ph.PRE, 2, size=0)
  with pytest.raises(ValueError, match=r"adapters.placement=\['ffn'\]"):
    sharing.adapters.adapters(ph.PRE, 2, placement=["ffn"])


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_adapters_train_through_the_binary_with_the_trunk_frozen(tmp_path, capsys):
  model_dir = tmp_path / "adapters"
  assert train.main(["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
                     "--gin_file=gin/sharing/adapters.gin", "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}",
                     "--gin.BATCH_SIZE=24", "--gin.TRAIN_STEPS=2", "--gin.trainer.train.eval_batch_size=512",
                     f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE]) == 0
  start = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mtl_jax: sharing="))
  counts = {k: int(v.replace(",", "")) for k, v in (kv.split("=") for kv in start.split("parameters ")[1]
                                                    .split(";")[0].split())}
  assert start.startswith("mtl_jax: sharing=adapters tasks=3")
  heads = counts["total"] - counts["embedder"] - counts["trunk"]
  assert counts["trainable"] == _adapter_size(model_dir) + heads > heads
  assert json.loads((model_dir / "results.json").read_text())["step"] == 2


def _adapter_size(model_dir):
  spec = json.loads((model_dir / "run_spec.json").read_text())
  return sum(int(np.prod(s)) for p, s in spec["param_shapes"].items() if "['adapter_" in p)


def test_compare_report_shows_trainable_next_to_total():
  from mtl_jax.compare import aggregate, report
  stat = {"mean": 0.5, "std": 0.01, "n": 2, "values": [0.49, 0.51]}
  group = {"strategy": "adapters", "average": stat, "delta_m": stat, "params_total": 22_800_000,
           "params_trainable": aggregate._trainable({"total": 22_800_000, "trainable": 1_200_000}),
           "steps_per_second": 2.0, "wall_s": 60.0, "seeds": [0, 1]}
  header, _, row = report._summary_table({"adapters": group}, ["adapters"])
  assert "| params | trainable |" in header
  assert "| 22,800,000 | 1,200,000 |" in row
  assert aggregate._trainable({"total": 5}) == 5  # logs from before the trainable count: everything trained
