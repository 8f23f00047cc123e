"""The tools around a trunk, from each model_type (t5, deberta-v2, modernbert, electra):
mtl-encode (the CLI's npz against HF transformers' hidden states on the same ids, the ids against
HF's tokenizer), mtl-probe's featurizer (every layer pooled; the last against HF's states),
mtl-taskemb's Fisher (its per-layer and attention perturbations reach every layout's layers),
and both CLIs end to end (e2e). init_from per type: tests/test_pretrained_<type>.py."""

import csv
import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

import trunk_families as tf_
from helpers import KINDS, NUM_CLASSES, fixed_batch
from pretrained_fixtures import TOKENIZER_FILES

TEXTS = ["A gripping, well acted thriller.", "", "Dull.", "An unusually long line that max_length cuts, keeping "
         "the closing special token at the end of it all."]
TYPES = ("t5", "deberta-v2", "modernbert", "electra")
# the default suite: deberta-v2 (the most layout of its own); the rest under the matrix marker
DEFAULT = ("deberta-v2",)
PARAMS = [t if t in DEFAULT else pytest.param(t, marks=pytest.mark.matrix) for t in TYPES]


def _hf_model(transformers, model_type):
  """A random-weight model of `model_type` with BERT's 30522 ids (MiniLM's tokenizer files beside it)."""
  common = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=48, max_position_embeddings=64, pad_token_id=0)
  if model_type == "t5":
    return transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=30522, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0, pad_token_id=0))
  if model_type == "deberta-v2":
    return transformers.DebertaV2Model(transformers.DebertaV2Config(
        relative_attention=True, position_buckets=8, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
        share_att_key=True, position_biased_input=False, norm_rel_ebd="layer_norm", type_vocab_size=0,
        layer_norm_eps=1e-7, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **common))
  if model_type == "modernbert":  # 3 layers: global, local (window |q - k| <= 2), global
    return transformers.ModernBertModel(transformers.ModernBertConfig(
        **{**common, "num_hidden_layers": 3}, local_attention=4, global_attn_every_n_layers=2, bos_token_id=101,
        eos_token_id=102, cls_token_id=101, sep_token_id=102))
  return transformers.ElectraModel(transformers.ElectraConfig(embedding_size=16, type_vocab_size=2, **common))


def write_checkpoint(model_type, path):
  """save_pretrained of the random model, and MiniLM's tokenizer files, so real task text tokenizes."""
  transformers = pytest.importorskip("transformers")
  from mtl_jax.pretrained import store
  tf_.save_random(_hf_model(transformers, model_type), path)
  minilm = store.resolve("all-MiniLM-L6-v2")
  for name in TOKENIZER_FILES:
    shutil.copy(minilm / name, path / name)
  return path


@pytest.fixture(scope="module", params=PARAMS)
def checkpoint(request, tmp_path_factory):
  return request.param, write_checkpoint(request.param, tmp_path_factory.mktemp(request.param) / "ckpt")


def _hf(model_type, path):
  transformers = pytest.importorskip("transformers")
  model_class = transformers.T5EncoderModel if model_type == "t5" else transformers.AutoModel
  return model_class.from_pretrained(str(path))


def _mean(hidden, mask):
  m = mask[..., None].astype(np.float64)
  return (hidden * m).sum(1) / m.sum(1)


def test_encode_cli_matches_transformers(checkpoint, tmp_path):
  transformers = pytest.importorskip("transformers")
  from mtl_jax.pretrained import encode
  model_type, path = checkpoint
  (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
  assert encode.main([f"--checkpoint={path}", f"--input={tmp_path / 'texts.txt'}", f"--output={tmp_path / 'o.npz'}",
                      "--max_length=12"]) == 0
  got = dict(np.load(tmp_path / "o.npz"))
  want_ids = transformers.AutoTokenizer.from_pretrained(str(path))(TEXTS, truncation=True, max_length=12,
                                                                   padding="longest", return_tensors="np")
  np.testing.assert_array_equal(got["input_ids"], want_ids["input_ids"])
  np.testing.assert_array_equal(got["mask"], want_ids["attention_mask"])
  want = tf_.hf_hidden(_hf(model_type, path), got["input_ids"], got["mask"])
  diff = tf_.real_diff(got["hidden"], want, got["mask"])
  print(f"mtl-encode {model_type} vs transformers: max|diff| = {diff:.2e}")
  assert diff <= tf_.TOL and got["hidden"].shape == (len(TEXTS), 12, 32)
  assert (got["hidden"][got["mask"] == 0] == 0).all()


def test_probe_featurizer_pools_every_layer_as_transformers(checkpoint):
  """mtl-probe's frozen features [N, K+1, D]: the last slot is the checkpoint's final states pooled as the
  trunk pools (mean or [CLS]), computed by HF; the embedding slot and each layer are distinct."""
  from mtl_jax.probe import featurize
  model_type, path = checkpoint
  feat = featurize.from_checkpoint(model_type, str(path))
  ids, mask = tf_.padded_batch([12, 3, 8], 30522, first_id=101)
  got = feat.pooled(ids, mask)
  assert got.shape == (3, feat.config.num_layers + 1, 32)
  hidden = tf_.hf_hidden(_hf(model_type, path), ids, mask)
  want = hidden[:, 0] if feat.config.pooling == "cls" else _mean(hidden, mask)
  diff = float(np.abs(got[:, -1] - want).max())
  print(f"mtl-probe {model_type} ({feat.config.pooling}) vs transformers: max|diff| = {diff:.2e}")
  assert diff <= tf_.TOL
  slots = got.transpose(1, 0, 2).reshape(got.shape[1], -1)
  assert min(np.abs(a - b).max() for i, a in enumerate(slots) for b in slots[i + 1:]) > 1e-3


@pytest.mark.parametrize("model_type", [t if t in DEFAULT else pytest.param(t, marks=pytest.mark.matrix)
                                        for t in TYPES])
def test_taskemb_fisher_reaches_every_layer(model_type):
  """TaskEmb's activation Fisher on a hard model of each layout (sequence statistic): every layer's output
  and attention output gets a nonzero component (the interceptor knows the layout's layer class), and the
  last layer's equals the pooled vector's (mean pooling: the heads read the last layer's output, so its
  gradient summed over the tokens IS the pooled one: two hooks, one number). Post-LN layouts with biases
  (deberta-v2, electra) also match the bias identity of tests/test_taskemb_fisher.py."""
  import flax.linen as nn
  from mtl_jax.models.multitask import build_model
  from mtl_jax.taskemb import fisher
  from test_taskemb_fisher import _per_example_grads
  cfg = dataclasses.replace(tf_.TOY_CONFIGS[model_type], dropout_rate=0.0)
  assert cfg.pooling == "mean"
  model = build_model(cfg, "hard", NUM_CLASSES)
  batch = fixed_batch(batch_size=6, length=10)
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(1), batch)["params"])
  spec = fisher.FisherSpec(model, KINDS, params="none", activations=True, num_layers=cfg.num_layers,
                           d_model=cfg.d_model)
  got = fisher.diagonal_fisher(spec, params, [batch])
  assert got["activations"].shape == got["attention"].shape == (cfg.num_layers, cfg.d_model)
  assert (got["activations"].max(1) > 0).all() and (got["attention"].max(1) > 0).all(), model_type
  np.testing.assert_allclose(got["activations"][-1], got["pooled"], rtol=2e-4, atol=1e-10)
  if model_type in ("deberta-v2", "electra"):
    grads = _per_example_grads(model, params, batch)
    tokens = batch["input_mask"].sum(1).astype(np.float64)
    for component, bias in (("activations", "ln_mlp/LayerNorm_0/bias"), ("attention", "attention/out_bias")):
      want = np.mean([[g[f"trunk/trunk/layer_{k}/{bias}"] ** 2 / n for k in range(cfg.num_layers)]
                      for g, n in zip(grads, tokens)], axis=0)
      np.testing.assert_allclose(got[component], want, rtol=2e-4, atol=1e-10, err_msg=component)


@pytest.mark.e2e  # two CLIs end to end, two short fine-tuning runs (marker e2e: CI's second step)
def test_probe_and_taskemb_clis_from_a_t5_checkpoint(tmp_path):
  """mtl-probe and mtl-taskemb (textemb + taskemb with its fine-tuning runs started from the checkpoint)
  through their mains, from a T5 encoder: the layout whose last layer carries the final norm."""
  from mtl_jax.probe import cli as probe_cli
  from mtl_jax.taskemb import cli as taskemb_cli
  ckpt = write_checkpoint("t5", tmp_path / "t5")
  out = tmp_path / "probe"
  assert probe_cli.main([f"--featurizer=t5={ckpt}", "--tasks=chatterbot_intent", "--sizes=40", "--seeds=0",
                         "--models=logreg", "--max_length=32", f"--cache_dir={tmp_path / 'cache'}",
                         f"--out_dir={out}"]) == 0
  rows = list(csv.DictReader(open(out / "probe_results.csv")))
  assert len(rows) == 1 and rows[0]["examples"] == "40" and 0.0 <= float(rows[0]["test"]) <= 1.0
  out = tmp_path / "taskemb"
  tasks = ["bbc_topic", "rotten_tomatoes"]
  assert taskemb_cli.main([
      "--tasks=" + ",".join(tasks), "--methods=taskemb,textemb", f"--trunk=t5={ckpt}", "--seeds=0",
      "--finetune_gin_file=gin/runs/quickstart.gin", "--finetune_steps=2", "--finetune_binding=BATCH_SIZE=8",
      f"--finetune_binding=pretrained.checkpoint='{ckpt}'", "--finetune_binding=make_mesh.mesh_shape=(1, 1)",
      "--finetune_binding=TASK_FEATURE_LENGTHS={'inputs': 16}", "--finetune_binding=trainer.train.eval_batch_size=256",
      "--max_length=16", "--max_examples=8", "--fisher_batch_size=4", f"--cache_dir={tmp_path / 'cache'}",
      f"--out_dir={out}"]) == 0
  spec = json.loads((out / "finetune" / "bbc_topic__seed0" / "run_spec.json").read_text())
  assert spec["encoder"]["model_type"] == "t5"  # the fine-tuning runs started from the checkpoint
  with np.load(out / "taskemb_seed0.npz") as e:
    assert e["activations"].shape == (2, 2, 32)
    assert (np.abs(e["activations"]).max(-1) > 0).all()  # every layer of both tasks has a Fisher
  with np.load(out / "textemb.npz") as e:
    assert e["textemb"].shape == (2, 32) and list(e["tasks"]) == tasks
