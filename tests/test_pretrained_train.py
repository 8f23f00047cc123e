"""A pretrained run end to end through the binary's main() (in-process, 8 fake devices):
the checkpoint's architecture, tokenizer and weights are used, recorded and protected."""

import hashlib
import json

import numpy as np
from safetensors.numpy import load_file

from mtl_jax import train
from mtl_jax.pretrained import export
from pretrained_fixtures import write_tiny_checkpoint
import pytest

BASE = ["--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin", "--gin_file=gin/pretrained/minilm.gin",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}", "--gin.BATCH_SIZE=16", "--gin.TRAIN_STEPS=2",
        "--gin.trainer.train.eval_batch_size=256"]


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_frozen_pretrained_trunk_trains_heads_records_and_refuses_another_checkpoint(tmp_path, capsys):
  ckpt = write_tiny_checkpoint(tmp_path / "ckpt", d=48, heads=2, ff=96, pooling="mean")
  model_dir = tmp_path / "run"
  args = [*BASE, f"--gin.pretrained.checkpoint={ckpt}", f"--gin.MODEL_DIR={model_dir}"]
  assert train.main([*args, "--gin_file=gin/optim/frozen_trunk.gin"]) == 0
  out = capsys.readouterr().out
  assert "parameters embedder=1,468,320" in out  # 30522 x 48 tokens + 64 x 48 positions + 2 x 48 types + 2 x 48 LN
  assert "param groups: frozen=" in out
  spec = json.loads((model_dir / "run_spec.json").read_text())
  assert spec["pretrained"]["sha256"] == hashlib.sha256((ckpt / "model.safetensors").read_bytes()).hexdigest()
  enc = spec["encoder"]  # from config.json, not from tiny.gin (d_model=32)
  assert (enc["d_model"], enc["mlp_dim"], enc["vocab_size"], enc["norm"], enc["pooling"]) == (48, 96, 30522, "post",
                                                                                           "mean")
  results = json.loads((model_dir / "results.json").read_text())
  assert results["step"] == 2 and set(results["tasks"]) == {"bbc_topic", "rotten_tomatoes", "vader_tweets"}

  # the frozen trunk after training is the checkpoint, tensor for tensor (read back through export)
  exported = export.export_model_dir(model_dir, tmp_path / "exported")
  want, got = load_file(str(ckpt / "model.safetensors")), load_file(str(exported / "model.safetensors"))
  encoder_names = [k for k in want if not k.startswith("pooler.")]
  assert len(encoder_names) == 5 + 2 * 16
  for name in encoder_names:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)

  # resuming with other weights is refused before anything is written
  other = write_tiny_checkpoint(tmp_path / "other", d=48, heads=2, ff=96, pooling="mean", seed=1)
  before = sorted(p.name for p in model_dir.iterdir())
  rc = train.main([*BASE, f"--gin.pretrained.checkpoint={other}", f"--gin.MODEL_DIR={model_dir}",
                   "--gin_file=gin/optim/frozen_trunk.gin", "--gin.TRAIN_STEPS=4"])
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert rc == 2 and "pretrained checkpoint" in line and spec["pretrained"]["sha256"] in line, line
  assert sorted(p.name for p in model_dir.iterdir()) == before


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_sluice_from_a_pretrained_checkpoint_trains(tmp_path):
  ckpt = write_tiny_checkpoint(tmp_path / "ckpt", pooling="mean")
  model_dir = tmp_path / "sluice"
  assert train.main([*BASE, f"--gin.pretrained.checkpoint={ckpt}", f"--gin.MODEL_DIR={model_dir}",
                     "--gin_file=gin/sharing/sluice.gin"]) == 0
  record = json.loads((model_dir / "results.json").read_text())
  assert record["step"] == 2 and np.isfinite(record["average"])
  assert json.loads((model_dir / "run_spec.json").read_text())["sharing"] == "sluice"
