"""Exporting a trained trunk as an HF-layout directory: a lossless round trip, the same function
(numpy reference, transformers), the right tower / column / expert slice, one-line refusals."""

import dataclasses
import json
import re

import jax
import numpy as np
import optax
import pytest
from flax import traverse_util
from flax.core import meta

import bert_reference
from mtl_jax.run import checkpoints, run_spec
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.models.multitask import MultiTaskModel, build_model
from mtl_jax.pretrained import checkpoint as ckpt_lib
from mtl_jax.pretrained import encode, export, load, store
from mtl_jax.sharing import soft
from mtl_jax.step.steps import TrainState, dummy_batch
from pretrained_fixtures import write_tiny_checkpoint

pytestmark = pytest.mark.xdist_group("pretrained_export")  # one worker under -n: the MiniLM export is built once

TOL = 1e-4


def _model(cfg, strategy):
  if strategy == "soft":  # layer_0 tied (one copy per task), layer_1 shared outright
    return MultiTaskModel(cfg, soft.soft(cfg, 2, tied=(r"^layers/layer_0/",)), (3, 1))
  return build_model(cfg, strategy, [3, 1])


def _perturbed(cfg, strategy, ckpt, scale=0.05, seed=0):
  """The strategy's params loaded from `ckpt`, then every encoder param (each slice on its own) moved off it."""
  model = _model(cfg, strategy)
  init = meta.unbox(jax.jit(model.init)(jax.random.key(0), dummy_batch(2, 8))["params"])
  flat = traverse_util.flatten_dict(load.into_params(init, ckpt.params()), sep="/")
  rng = np.random.default_rng(seed)
  out = {}
  for path, leaf in flat.items():
    leaf = np.asarray(leaf)
    if load.checkpoint_key(path) is not None:
      leaf = leaf + scale * (float(leaf.std()) or 1.0) * rng.standard_normal(leaf.shape).astype(np.float32)
    out[path] = leaf
  return model, traverse_util.unflatten_dict(out, sep="/")


def _batch(lengths, length, vocab=30522, seed=1):
  rng = np.random.default_rng(seed)
  mask = (np.arange(length)[None] < np.array(lengths)[:, None]).astype(np.int32)
  ids = (rng.integers(1000, vocab, mask.shape) * mask).astype(np.int32)
  ids[:, 0] = 101
  return ids, mask


def _our_hidden(cfg, params, ids, mask):
  """The hard model's own embedder + trunk subtrees, run by the encode path."""
  return np.asarray(encode._forward(cfg, {"embedder": params["embedder"], "trunk": params["trunk"]}, ids, mask))


def _real_diff(a, b, mask):
  return float(np.abs(np.asarray(a, np.float64) - b)[mask.astype(bool)].max())


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory):
  source = ckpt_lib.open_checkpoint(store.resolve("all-MiniLM-L6-v2"))
  cfg = dataclasses.replace(source.encoder_config(), pooling="mean")
  _, params = _perturbed(cfg, "hard", source)
  out = export.export_params(params, cfg, tmp_path_factory.mktemp("x") / "exported", source=source.path)
  return source, cfg, params, out


def test_round_trip_is_lossless(minilm_export):
  source, cfg, params, out = minilm_export
  back = ckpt_lib.open_checkpoint(out)
  flat = traverse_util.flatten_dict(params, sep="/")
  got = back.params()
  assert set(got) == set(source.params())
  for key, value in got.items():
    np.testing.assert_array_equal(value, flat[key if key.startswith("embedder/") else f"trunk/trunk/{key}"],
                                  err_msg=key)
  assert back.encoder_config() == cfg
  src_config, new_config = source.config, back.config
  assert {k: v for k, v in new_config.items() if k != "mtl_jax"} == src_config
  for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    assert (out / name).read_bytes() == (source.path / name).read_bytes()
  raw = back.tensors()  # HF names, torch Linear layout
  np.testing.assert_array_equal(raw["encoder.layer.3.intermediate.dense.weight"],
                                flat["trunk/trunk/layer_3/mlp/wi/kernel"].T)
  np.testing.assert_array_equal(raw["pooler.dense.weight"], source.tensors()["pooler.dense.weight"])


def test_exported_dir_runs_the_perturbed_params(minilm_export):
  source, cfg, params, out = minilm_export
  ids, mask = _batch([12, 7, 3], 12)
  ours = _our_hidden(cfg, params, ids, mask)
  want = bert_reference.forward(out, ids, mask)
  diff = _real_diff(ours, want, mask)
  print(f"exported MiniLM: numpy reference vs our forward of the perturbed params: max|diff| = {diff:.2e}")
  assert diff <= TOL
  assert _real_diff(bert_reference.forward(source.path, ids, mask), want, mask) > 1e-2  # the perturbation shows


def test_transformers_loads_the_export(minilm_export):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  source, cfg, params, out = minilm_export
  model, info = transformers.AutoModel.from_pretrained(str(out), output_loading_info=True)
  assert not info["missing_keys"] and not info["mismatched_keys"], info
  ids, mask = _batch([12, 7, 3], 12)
  with torch.no_grad():
    want = model.eval()(input_ids=torch.tensor(ids, dtype=torch.long),
                        attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()
  diff = _real_diff(_our_hidden(cfg, params, ids, mask), want, mask)
  print(f"exported MiniLM: transformers vs our forward: max|diff| = {diff:.2e}")
  assert diff <= TOL


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return ckpt_lib.open_checkpoint(write_tiny_checkpoint(tmp_path_factory.mktemp("tiny")))


# where each strategy keeps checkpoint tensor KEY, and which slice (None: one copy) the export must take
SLICES = {
    "soft": lambda key: (f"trunk/tied/layers/{key}", 1) if key.startswith("layer_0/") else
            (f"trunk/shared/layers/{key}", None),
    "sluice": lambda key: (f"trunk/sluice/{key}", 1),
    "cross_stitch": lambda key: (f"trunk/cross_stitch/{key}", 1),
    "mmoe": lambda key: (f"trunk/mmoe/experts/layers/{key}", 2),
}


@pytest.mark.parametrize("strategy", sorted(SLICES))
def test_export_picks_the_slice(tiny, tmp_path, strategy):
  cfg = tiny.encoder_config()
  _, params = _perturbed(cfg, strategy, tiny)
  pick = {"expert": 2} if strategy == "mmoe" else {"task": 1}
  out = export.export_params(params, cfg, tmp_path / "out", source=tiny.path, **pick)
  flat = traverse_util.flatten_dict(params, sep="/")
  got = ckpt_lib.open_checkpoint(out).params()
  assert set(got) == set(tiny.params())
  for key, value in got.items():
    path, index = (key, None) if key.startswith("embedder/") else SLICES[strategy](key)
    want = flat[path] if index is None else flat[path][index]
    np.testing.assert_array_equal(value, want, err_msg=key)
    if index is not None:
      assert not np.array_equal(flat[path][0], want)  # the slices differ: the wrong one would fail
  axis = "expert" if strategy == "mmoe" else "task"
  with pytest.raises(ValueError, match=f"holds one copy per {axis} .*pick one with {axis}=0") as e:
    export.export_params(params, cfg, tmp_path / "unpicked", source=tiny.path)
  assert "\n" not in str(e.value) and not (tmp_path / "unpicked").exists()


def test_roberta_layout_export_loads_in_transformers(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  source = ckpt_lib.open_checkpoint(write_tiny_checkpoint(tmp_path / "r", model_type="roberta"))
  cfg = source.encoder_config()
  _, params = _perturbed(cfg, "hard", source)
  out = export.export_params(params, cfg, tmp_path / "out", source=source.path)
  assert json.loads((out / "config.json").read_text())["max_position_embeddings"] == 66
  model = transformers.AutoModel.from_pretrained(str(out)).eval()
  ids, mask = _batch([10, 4], 10)
  ids[mask == 0] = 1  # RoBERTa's pad id: HF derives position ids from it
  with torch.no_grad():
    want = model(input_ids=torch.tensor(ids, dtype=torch.long),
                 attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()
  assert _real_diff(_our_hidden(cfg, params, ids, mask), want, mask) <= TOL


def test_pre_ln_models_are_refused_in_one_line(tmp_path):
  cfg = EncoderConfig(vocab_size=50)
  model = build_model(cfg, "hard", [2])
  params = meta.unbox(jax.jit(model.init)(jax.random.key(0), dummy_batch(2, 8))["params"])
  with pytest.raises(ValueError, match="only checkpoint-architecture trunks export as BERT .*norm='pre'") as e:
    export.export_params(params, cfg, tmp_path / "out")
  assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


def _model_dir(path, cfg, strategy, params, source, step=7):
  """A MODEL_DIR as the trainer leaves it: run_spec.json + an orbax checkpoint of the TrainState
  (params replicated over every device, restored by export onto one)."""
  mesh = jax.make_mesh((len(jax.devices()),), ("data",))
  params = jax.device_put(params, jax.sharding.NamedSharding(mesh, jax.P()))
  state = TrainState(step=np.int32(step), params=params, opt_state=optax.adamw(1e-3).init(params))
  spec = run_spec.make(cfg, strategy, ["alpha", "beta"], [3, 1], params, {"pretrained": {"checkpoint": str(source), "sha256": "x"}})
  path.mkdir()
  run_spec.write(path, spec)
  ckpt = checkpoints.Checkpoints(path)
  ckpt.save(step, state, {"batches_consumed": step}, force=True)
  ckpt.close()
  return path


def test_export_cli_from_a_model_dir(tiny, tmp_path, capsys):
  cfg = tiny.encoder_config()
  _, params = _perturbed(cfg, "soft", tiny)
  model_dir = _model_dir(tmp_path / "run", cfg, "soft", params, tiny.path)
  assert export.main([f"--model_dir={model_dir}", f"--output={tmp_path / 'beta'}", "--task=beta"]) == 0
  flat = traverse_util.flatten_dict(params, sep="/")
  got = ckpt_lib.open_checkpoint(tmp_path / "beta").params()
  for key, value in got.items():
    path, index = (key, None) if key.startswith("embedder/") else SLICES["soft"](key)
    np.testing.assert_array_equal(value, flat[path] if index is None else flat[path][index], err_msg=key)
  record = json.loads((tmp_path / "beta" / "config.json").read_text())["mtl_jax"]
  assert (record["step"], record["sharing"], record["task"]) == (7, "soft", "beta")
  assert (tmp_path / "beta" / "tokenizer.json").is_file()
  capsys.readouterr()
  cases = [
      ([], "a soft run has one trunk per task; pick one with --task .alpha, beta."),
      (["--task=gamma"], "--task 'gamma' is not one of the run's tasks: alpha, beta"),
      (["--task=beta"], "already exists and is not empty"),  # the export written above
  ]
  for extra, message in cases:
    output = tmp_path / "beta" if "exists" in message else tmp_path / "other"
    assert export.main([f"--model_dir={model_dir}", f"--output={output}", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtl-export: error: ") and err.count("\n") == 1 and re.search(message, err), err


def test_export_cli_refuses_a_from_scratch_model_dir(tmp_path, capsys):
  model_dir = tmp_path / "scratch"
  model_dir.mkdir()
  spec = {"sharing": "hard", "tasks": ["a"], "num_classes": [2], "pretrained": None,
          "encoder": dataclasses.asdict(EncoderConfig(vocab_size=50)), "param_shapes": {}}
  (model_dir / "run_spec.json").write_text(json.dumps(spec))
  assert export.main([f"--model_dir={model_dir}", f"--output={tmp_path / 'out'}"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("mtl-export: error: only checkpoint-architecture trunks export as BERT")
  assert err.count("\n") == 1, err
  assert export.main([f"--model_dir={tmp_path / 'nothing'}", f"--output={tmp_path / 'out'}"]) == 2
  assert "has no run_spec.json" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()
