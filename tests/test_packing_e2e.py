"""Packing through the binary (gin/mixing/packed.gin): a gradient weighting on grouped packed rows, a
SIGTERM during a save, and the resumed run ends bit-identical to an uninterrupted one."""

import re

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import ONE_DEVICE, TINY_ARGS
from mtl_jax import train

ARGS = (*TINY_ARGS, "--gin_file=gin/mixing/packed.gin", "--gin_file=gin/weighting/pcgrad.gin",
        "--gin.BATCH_SIZE=12", "--gin.TRAIN_STEPS=4", "--gin.trainer.train.checkpoint_period=2",
        "--gin.trainer.train.eval_period=4", "--gin.trainer.train.log_period=1", ONE_DEVICE)


def _run(monkeypatch, model_dir, faults=""):
  monkeypatch.setenv("MTL_JAX_FAULTS", faults)
  return train.main(["--no_progress", *ARGS, f"--gin.MODEL_DIR={model_dir}"])


def _leaves(model_dir, step):
  tree = ocp.StandardCheckpointer().restore(model_dir / "checkpoints" / str(step) / "state")
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.e2e  # three tiny in-process runs
def test_packed_pcgrad_run_logs_its_fill_rate_and_resumes_bit_identically(tmp_path, monkeypatch, capsys, clean_gin):
  reference = tmp_path / "reference"
  assert _run(monkeypatch, reference) == 0
  out = capsys.readouterr().out
  rate = float(re.search(r"packing: fill rate ([0-9.]+) \(real tokens / token slots\)", out).group(1))
  assert 0.5 < rate <= 1.0, out
  interrupted = tmp_path / "interrupted"
  assert _run(monkeypatch, interrupted, "sigterm_save@2") == 0
  assert "saved a checkpoint at step 2" in capsys.readouterr().out
  assert _run(monkeypatch, interrupted) == 0
  assert "resuming from checkpoint at step 2" in capsys.readouterr().out
  want, got = _leaves(reference, 4), _leaves(interrupted, 4)
  assert len(want) == len(got)
  for a, b in zip(want, got):
    np.testing.assert_array_equal(a, b)
