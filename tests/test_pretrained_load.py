"""Reading HF-layout checkpoints and starting every sharing strategy from one."""

import json

import jax
import numpy as np
import pytest
from flax import traverse_util
from flax.core import meta

from mtl_jax.models.encoder import Embedder
from mtl_jax.models.multitask import build_model
from mtl_jax.pretrained import checkpoint as ckpt_lib
from mtl_jax.pretrained import load
from mtl_jax.sharing.soft import tie_penalty
from pretrained_fixtures import write_tiny_checkpoint

STRATEGIES = ("hard", "soft", "sluice", "cross_stitch", "mmoe")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return ckpt_lib.open_checkpoint(write_tiny_checkpoint(tmp_path_factory.mktemp("bert")))


def _batch(length=10):
  rng = np.random.default_rng(1)
  mask = (np.arange(length)[None] < np.array([[10], [6], [3], [8]])).astype(np.int32)
  return {"input_ids": (rng.integers(1000, 2000, (4, length)) * mask).astype(np.int32), "input_mask": mask,
          "task_id": np.array([0, 1, 0, 1], np.int32)}


def _loaded(cfg, strategy, ckpt_params, **kw):
  model = build_model(cfg, strategy, [3, 1])
  init = meta.unbox(jax.jit(model.init)(jax.random.key(0), _batch())["params"])
  return model, init, load.into_params(init, ckpt_params, **kw)


def _trunk_out(model, cfg, params, batch):
  x = Embedder(cfg).apply({"params": params["embedder"]}, batch["input_ids"])
  return np.asarray(model.trunk.apply({"params": params["trunk"]}, x, batch["input_mask"], batch["task_id"], True))


def test_encoder_config_follows_config_json(tiny, tmp_path):
  cfg = tiny.encoder_config()
  assert (cfg.d_model, cfg.num_heads, cfg.mlp_dim, cfg.num_layers, cfg.vocab_size) == (32, 2, 64, 2, 30522)
  assert (cfg.norm, cfg.gelu_exact, cfg.layer_norm_eps, cfg.type_vocab_size, cfg.embed_norm) == (
      "post", True, 1e-12, 2, True)
  assert (cfg.max_len, cfg.position_offset, cfg.pooling) == (64, 0, "cls")
  assert tiny.encoder_config(dropout_rate=0.2, pooling="mean").dropout_rate == 0.2
  roberta = ckpt_lib.open_checkpoint(write_tiny_checkpoint(tmp_path / "r", model_type="roberta", pooling="mean"))
  rcfg = roberta.encoder_config()
  assert (rcfg.position_offset, rcfg.max_len, rcfg.type_vocab_size, rcfg.pooling) == (2, 64, 1, "mean")
  tanh = ckpt_lib.open_checkpoint(write_tiny_checkpoint(tmp_path / "t", hidden_act="gelu_new"))
  assert tanh.encoder_config().gelu_exact is False


def test_params_follow_the_hf_layout(tiny, tmp_path):
  raw, ours = tiny.tensors(), tiny.params()
  w = raw["encoder.layer.1.attention.self.key.weight"]  # torch Linear [out, in]
  np.testing.assert_array_equal(ours["layer_1/attention/key_kernel"], w.T.reshape(32, 2, 16))
  o = raw["encoder.layer.0.attention.output.dense.weight"]
  np.testing.assert_array_equal(ours["layer_0/attention/out_kernel"], o.T.reshape(2, 16, 32))
  np.testing.assert_array_equal(ours["layer_1/mlp/wi/kernel"], raw["encoder.layer.1.intermediate.dense.weight"].T)
  np.testing.assert_array_equal(ours["layer_0/ln_mlp/LayerNorm_0/scale"], raw["encoder.layer.0.output.LayerNorm.weight"])
  assert not any("pooler" in k for k in ours)
  # a task-model prefix ('bert.') and old gamma/beta LayerNorm names read the same
  other = write_tiny_checkpoint(tmp_path / "prefixed", prefix="bert.")
  from safetensors.numpy import load_file, save_file
  renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in load_file(str(other / "model.safetensors")).items()}
  save_file(renamed, str(other / "model.safetensors"))
  again = ckpt_lib.open_checkpoint(other).params()
  assert set(again) == set(ours)
  np.testing.assert_array_equal(again["embedder/ln/LayerNorm_0/scale"], ours["embedder/ln/LayerNorm_0/scale"])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_starts_from_the_checkpoint(tiny, strategy):
  cfg, ckpt_params = tiny.encoder_config(), tiny.params()
  model, init, params = _loaded(cfg, strategy, ckpt_params)
  flat, flat_init = (traverse_util.flatten_dict(p, sep="/") for p in (params, init))
  loaded = {p for p in flat if load.checkpoint_key(p) is not None}
  assert {load.checkpoint_key(p) for p in loaded} == set(ckpt_params)  # every tensor placed somewhere
  for path, value in flat.items():
    value = np.asarray(value)
    if path in loaded:  # one copy, or the same copy on every tower / column / expert slice
      src = ckpt_params[load.checkpoint_key(path)]
      np.testing.assert_array_equal(value, np.broadcast_to(src, value.shape), err_msg=path)
    else:  # heads, alphas, betas, gates: their own fresh init
      np.testing.assert_array_equal(value, np.asarray(flat_init[path]), err_msg=path)
  if strategy == "soft":
    assert float(tie_penalty(params["trunk"]["tied"])) == 0.0
  # the function at step 0: exactly the checkpoint's encoder, except sluice, whose subspace alpha and
  # layer mix beta (0.9 on the last layer) start away from the identity by design
  hard_model, _, hard_params = _loaded(cfg, "hard", ckpt_params)
  want = _trunk_out(hard_model, cfg, hard_params, _batch())
  got = _trunk_out(model, cfg, params, _batch())
  real = _batch()["input_mask"][..., None].astype(bool)
  diff = np.abs(np.where(real, got - want, 0)).max()
  assert (diff > 1e-2) if strategy == "sluice" else (diff < 1e-5), diff


def test_mmoe_expert_noise_breaks_symmetry(tiny):
  cfg, ckpt_params = tiny.encoder_config(), tiny.params()
  _, _, params = _loaded(cfg, "mmoe", ckpt_params, expert_noise=0.01)
  w = np.asarray(params["trunk"]["mmoe"]["experts"]["layers"]["layer_0"]["mlp"]["wi"]["kernel"])
  src = ckpt_params["layer_0/mlp/wi/kernel"]
  np.testing.assert_array_equal(w[0], src)  # expert 0 is the checkpoint itself
  rel = np.abs(w[1:] - src).std() / src.std()
  assert 0.005 < rel < 0.02, rel
  assert not np.array_equal(w[1], w[2])


def test_bad_checkpoints_are_one_clear_line(tmp_path):
  with pytest.raises(ValueError, match="has no config.json"):
    ckpt_lib.open_checkpoint(tmp_path)
  path = write_tiny_checkpoint(tmp_path / "gpt", tokenizer=False)
  config = json.loads((path / "config.json").read_text())
  (path / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
  with pytest.raises(ValueError, match="model_type 'gpt2' is not supported; supported: bert, roberta"):
    ckpt_lib.open_checkpoint(path)
  (path / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
  with pytest.raises(ValueError, match="hidden_act 'relu' is not supported"):
    ckpt_lib.open_checkpoint(path)
  (path / "config.json").write_text(json.dumps(config))
  (path / "model.safetensors").rename(path / "pytorch_model.bin")
  with pytest.raises(ValueError, match="has no model.safetensors .only pytorch_model.bin: convert it"):
    ckpt_lib.open_checkpoint(path)
  (path / "pytorch_model.bin").rename(path / "model.safetensors")
  (path / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
  with pytest.raises(ValueError, match=r"tensor 'encoder.layer.0.intermediate.dense.weight' has shape \(64, 32\), "
                                       r"config.json implies \(48, 32\)"):
    ckpt_lib.open_checkpoint(path).params()
  (path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
  with pytest.raises(ValueError, match="tensor 'encoder.layer.2.attention.self.query.weight' is missing"):
    ckpt_lib.open_checkpoint(path).params()
