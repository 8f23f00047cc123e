"""Shared checks for the trunk layouts chosen by model_type (tests/test_pretrained_<type>.py):
hidden states against HF transformers on a random-weight model saved with save_pretrained, the
export round trip through AutoModel.from_pretrained, tokenizer ids and pairs against HF's tokenizer,
one-line errors on edited configs, and one training step of every strategy."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from flax import traverse_util

from mtl_jax import sharing as sharing_lib
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.pretrained import checkpoint as ckpt_lib
from mtl_jax.pretrained import encode, export, load

TOL = 1e-4
_TOY = dict(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, max_len=64, vocab_size=50, norm="post")
TOY_CONFIGS = {  # each model_type as mtl_jax/pretrained/checkpoint.py builds it, toy size (no transformers)
    "t5": EncoderConfig(model_type="t5", mlp_gated=True, relative_buckets=8, relative_max_distance=20, **_TOY),
    "deberta-v2": EncoderConfig(model_type="deberta-v2", gelu_exact=True, layer_norm_eps=1e-7, embed_norm=True,
                                relative_buckets=4, relative_max_distance=64, **_TOY),
    # layer 1 is local with a window of 3 < 12 tokens: the sliding-window mask is in the step
    "modernbert": EncoderConfig(model_type="modernbert", embed_norm=True, layer_norm_eps=1e-5, rope_theta=160000.0,
                                rope_theta_local=10000.0, sliding_window=3, global_every=2, **_TOY),
    "electra": EncoderConfig(model_type="electra", gelu_exact=True, layer_norm_eps=1e-12, embed_norm=True,
                             type_vocab_size=2, embed_dim=16, **_TOY),
}
STRATEGIES = ("hard", "soft", "sluice", "cross_stitch", "mmoe", "adapters", "lora", "adapter_fusion")
# the default suite trains hard (encoder.layer_module's seam; peft_layer.run_trunk's is run by each file's
# lora-merge test); the rest of the sweep (10-25 s each on the shared box) runs under the matrix marker
STRATEGY_PARAMS = [s if s == "hard" else pytest.param(s, marks=pytest.mark.matrix) for s in STRATEGIES]


def save_random(model, path, seed=0):
  """LayerNorm / RMSNorm scales away from 1 and biases away from 0, so every tensor matters; then
  save_pretrained (safetensors)."""
  import torch
  torch.manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name.lower() or name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
  model.save_pretrained(str(path), safe_serialization=True)
  return path


def padded_batch(lengths, vocab, pad_id=0, first_id=None, seed=1):
  rng = np.random.default_rng(seed)
  length = max(lengths)
  mask = (np.arange(length)[None] < np.array(lengths)[:, None]).astype(np.int32)
  ids = np.where(mask, rng.integers(5, vocab, mask.shape), pad_id).astype(np.int32)
  if first_id is not None:
    ids[:, 0] = first_id
  return ids, mask


def hf_hidden(model, ids, mask, **extra):
  import torch
  with torch.no_grad():
    kwargs = {k: torch.tensor(v, dtype=torch.long) for k, v in extra.items()}
    return model.eval()(input_ids=torch.tensor(ids, dtype=torch.long),
                        attention_mask=torch.tensor(mask, dtype=torch.long), **kwargs).last_hidden_state.numpy()


def real_diff(a, b, mask):
  return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))[mask.astype(bool)].max())


def ours(path, ids, mask, params=None):
  return encode.TextEncoder(path, params=params).hidden(ids, mask)


def check_parity_and_export(path, ids, mask, tmp_path, what, model_class=None):
  """Our hidden states == HF's for the saved checkpoint, and for its export read back by HF
  (model_class: AutoModel, or the encoder class where AutoModel builds more: T5EncoderModel)."""
  transformers = pytest.importorskip("transformers")
  model_class = model_class or transformers.AutoModel
  want = hf_hidden(model_class.from_pretrained(str(path)), ids, mask)
  got = ours(path, ids, mask)
  diff = real_diff(got, want, mask)
  print(f"{what} vs transformers: max|diff| = {diff:.2e}")
  assert diff <= TOL
  assert np.abs(want[mask.astype(bool)]).max() > 0.1  # not a comparison of zeros
  ckpt = ckpt_lib.open_checkpoint(path)
  flat = ckpt.params()
  rng = np.random.default_rng(3)  # a trained trunk: every tensor moved, so the export is not the source
  moved = {k: v + 0.05 * (float(v.std()) or 1.0) * rng.standard_normal(v.shape).astype(np.float32)
           for k, v in flat.items()}
  out = export.write(tmp_path / f"{what}_export", moved, ckpt.encoder_config(), source=path)
  model, info = model_class.from_pretrained(str(out), output_loading_info=True)
  assert not info["missing_keys"] and not info["mismatched_keys"], info
  exported = hf_hidden(model, ids, mask)
  diff = real_diff(ours(path, ids, mask, params=moved), exported, mask)
  print(f"{what} export vs transformers: max|diff| = {diff:.2e}")
  assert diff <= TOL
  assert real_diff(exported, want, mask) > 1e-3  # the moved weights were exported, not the source's
  back = ckpt_lib.open_checkpoint(out).params()
  assert set(back) == set(moved)
  for k in moved:
    np.testing.assert_array_equal(back[k], moved[k], err_msg=k)


def train_one_step(path, strategy, vocab):
  """One optimizer step of `strategy` started from the checkpoint: loss finite, trunk params moved
  (frozen-trunk strategies: the per-task modules moved), every checkpoint tensor loaded."""
  import optax
  from mtl_jax.scale import partitioning
  from mtl_jax.models.multitask import build_model
  from mtl_jax.step.steps import Steps
  from helpers import KINDS, NUM_CLASSES, fixed_batch
  ckpt = ckpt_lib.open_checkpoint(path)
  cfg = ckpt.encoder_config(dropout_rate=0.0)
  flat = ckpt.params()
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = Steps(build_model(cfg, strategy, NUM_CLASSES), optax.adam(1e-2), KINDS, mesh,
                partitioning.logical_axis_rules(), 0, 12, 10)
  state = steps.init_state()
  state = state.replace(params=load.into_params(state.params, flat))
  before = traverse_util.flatten_dict(jax.device_get(state.params), sep="/")
  for path_, leaf in before.items():  # the checkpoint is in every trunk copy
    key = load.checkpoint_key(path_)
    if key in flat:
      np.testing.assert_array_equal(np.asarray(leaf).reshape((-1,) + flat[key].shape)[-1], flat[key], err_msg=path_)
  batch = fixed_batch(12, 10, seed=0)
  batch["input_ids"] = (batch["input_ids"] % (vocab - 5) + 5) * batch["input_mask"]
  state, metrics = steps.run_train_step(state, batch)
  assert bool(metrics["finite"]), strategy
  after = traverse_util.flatten_dict(jax.device_get(state.params), sep="/")
  moved = [p for p in before if not np.array_equal(before[p], after[p]) and load.checkpoint_key(p) is not None]
  assert moved, f"{strategy}: no trunk param moved"
  assert strategy in sharing_lib.names()


def check_lora_merge(path, ids, mask, tmp_path, targets, model_class=None, task=1, alpha=8.0):
  """A lora model started from the checkpoint, its factors random (as after training): task `task`'s
  trunk output == HF's hidden states of the lora_merge export (the update folded into the kernels)."""
  transformers = pytest.importorskip("transformers")
  from flax.core import meta
  from mtl_jax.models.encoder import Embedder
  from mtl_jax.models.multitask import MultiTaskModel
  from mtl_jax.pretrained import lora_merge
  from mtl_jax.sharing import lora
  from mtl_jax.step.steps import dummy_batch
  ckpt = ckpt_lib.open_checkpoint(path)
  cfg = ckpt.encoder_config(dropout_rate=0.0)
  strategy = lora.lora(cfg, 2, rank=4, alpha=alpha, targets=targets)
  model = MultiTaskModel(cfg, strategy, (2, 2))
  params = meta.unbox(jax.jit(model.init)(jax.random.key(0), dummy_batch(2, 8))["params"])
  params = load.into_params(params, ckpt.params())
  rng = np.random.default_rng(5)
  flat = {p: (0.2 * rng.standard_normal(v.shape)).astype(np.float32) if "/lora_" in f"/{p}" else np.asarray(v)
          for p, v in traverse_util.flatten_dict(params, sep="/").items()}
  assert sum("/lora_" in f"/{p}" for p in flat) == 2 * len(targets) * cfg.num_layers
  params = traverse_util.unflatten_dict(flat, sep="/")
  x = Embedder(cfg).apply({"params": params["embedder"]}, ids)
  task_id = np.full(ids.shape[:1], task, np.int32)
  got = np.asarray(strategy.apply({"params": params["trunk"]}, x, mask, task_id, True))
  out = export.export_params(lora_merge.merged_params(params, task, alpha), cfg, tmp_path / "lora_merged", source=path)
  model_class = model_class or transformers.AutoModel
  want = hf_hidden(model_class.from_pretrained(str(out)), ids, mask)
  diff = real_diff(got, want, mask)
  print(f"lora merge {cfg.model_type} {targets}: max|diff| = {diff:.2e}")
  assert diff <= TOL
  assert real_diff(want, ours(path, ids, mask), mask) > 1e-3  # the LoRA update changed the function


def check_token_types(path, ids, mask, types, model_class=None):
  """Pairs: token_type_ids 0 / 1 reach the embedder as HF's (our Embedder + hard trunk vs HF)."""
  transformers = pytest.importorskip("transformers")
  from mtl_jax.models.encoder import Embedder
  from mtl_jax.sharing.hard import HardSharing
  ckpt = ckpt_lib.open_checkpoint(path)
  cfg = ckpt.encoder_config(dropout_rate=0.0)
  params = encode.encoder_params(ckpt.params())
  x = Embedder(cfg).apply({"params": params["embedder"]}, ids, True, types)
  got = np.asarray(HardSharing(cfg, 1).apply({"params": params["trunk"]}, x, mask, np.zeros(len(ids), np.int32), True))
  model_class = model_class or transformers.AutoModel
  want = hf_hidden(model_class.from_pretrained(str(path)), ids, mask, token_type_ids=types)
  diff = real_diff(got, want, mask)
  print(f"{cfg.model_type} with token types: max|diff| = {diff:.2e}")
  assert diff <= TOL
  assert real_diff(want, hf_hidden(model_class.from_pretrained(str(path)), ids, mask), mask) > 1e-3  # types matter


def check_init_from(path, source="hard", target="sluice"):
  """init_from's path: a `source` run's params started from the checkpoint and moved (as trained) ->
  init_from.plain_encoder -> into a `target` model: every target trunk copy holds the moved weights,
  the shared position table included."""
  from flax.core import meta
  from mtl_jax.models.multitask import build_model
  from mtl_jax.step.steps import dummy_batch
  from mtl_jax.transfer import init_from
  ckpt = ckpt_lib.open_checkpoint(path)
  cfg = ckpt.encoder_config(dropout_rate=0.0)
  init = lambda strategy: meta.unbox(jax.jit(build_model(cfg, strategy, [2, 2]).init)(
      jax.random.key(0), dummy_batch(2, 8))["params"])
  src = traverse_util.flatten_dict(load.into_params(init(source), ckpt.params()), sep="/")
  rng = np.random.default_rng(7)
  src = {p: np.asarray(v) + 0.01 * rng.standard_normal(v.shape).astype(np.float32) for p, v in src.items()}
  plain = init_from.plain_encoder(traverse_util.unflatten_dict(src, sep="/"), {"sharing": source, "tasks": ["a", "b"]})
  assert set(plain) == {init_from.trunk_key(k) for k in ckpt.params()} | ({"ln_final/scale", "ln_final/bias"}
                                                                         & set(plain))
  tgt = traverse_util.flatten_dict(init_from.into_params(init(target), plain), sep="/")
  by_key = {init_from.trunk_key(p): v for p, v in src.items() if init_from.trunk_key(p) is not None}
  loaded = 0
  for p, v in tgt.items():
    key = init_from.trunk_key(p)
    if key is not None:
      np.testing.assert_array_equal(np.asarray(v).reshape((-1,) + by_key[key].shape)[-1], by_key[key], err_msg=p)
      loaded += 1
  assert loaded >= len(ckpt.params())


def with_config(path, tmp_path, **changes):
  """A copy of the checkpoint at `path` whose config.json has `changes` (the tensors untouched)."""
  bad = tmp_path / "bad"
  shutil.copytree(path, bad, dirs_exist_ok=True)
  config = json.loads((path / "config.json").read_text())
  (bad / "config.json").write_text(json.dumps({**config, **changes}))
  return bad


def check_one_line_error(fn, match):
  """fn() raises ValueError matching `match`, on one line (the project's bad-input rule)."""
  with pytest.raises(ValueError, match=match) as e:
    fn()
  assert "\n" not in str(e.value)


def check_ids_and_pairs(vocab, hf, texts, types=False):
  """Our ids == HF's tokenizer's on every text (specials from the vocabulary: bos only where it adds
  one) and on pairs built as "Task formats" builds them (pairs.layout_for == HF's tokenizer(a, b));
  types: the pair's token_type_ids too (first text 0, second layout.type_b)."""
  from mtl_jax.input import pairs
  bos = [vocab.bos_id] if vocab.add_bos else []
  for text in texts:
    assert bos + list(vocab.encode(text)) + [vocab.eos_id] == hf(text)["input_ids"], text
  layout = pairs.layout_for(vocab)
  for first, second in zip(texts[:40], texts[40:80]):
    a_ids, b_ids, want = list(vocab.encode(first)), list(vocab.encode(second)), hf(first, second)
    assert [*layout.prefix, *a_ids, *layout.middle, *b_ids, *layout.suffix] == want["input_ids"], (first, second)
    if types:
      n_a = len(layout.prefix) + len(a_ids) + len(layout.middle)
      assert [0] * n_a + [layout.type_b] * (len(want["input_ids"]) - n_a) == want["token_type_ids"]


def position_params(path):
  """The param paths of a hard model built from the checkpoint that hold relative positions."""
  from mtl_jax.models.multitask import build_model
  from mtl_jax.step.steps import dummy_batch
  cfg = ckpt_lib.open_checkpoint(path).encoder_config()
  shapes = jax.eval_shape(build_model(cfg, "hard", [2]).init, jax.random.key(0), dummy_batch(2, 8))["params"]
  return sorted(p for p in traverse_util.flatten_dict(shapes, sep="/") if "positions" in p or "rel" in p)
