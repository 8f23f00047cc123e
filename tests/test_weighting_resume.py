"""A state-keeping gradient weighting through the real binary: kill -9 after a checkpoint,
resume, and the final TrainState (weighting state included) is bit-identical to an
uninterrupted run. One subprocess (the killed run, on the same 8 fake devices); the
others run main() in-process."""

import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from conftest import ONE_DEVICE, REPO, TINY_ARGS, subprocess_env
from mtl_jax import train
import pytest

ARGS = (*TINY_ARGS, "--gin_file=gin/weighting/gradnorm.gin", "--gin.BATCH_SIZE=24", "--gin.TRAIN_STEPS=8",
        "--gin.trainer.train.checkpoint_period=2", "--gin.trainer.train.eval_period=8",
        "--gin.trainer.train.log_period=1", ONE_DEVICE)  # child (8 fake devices) and in-process: same mesh


def _state(model_dir, step):
  tree = ocp.StandardCheckpointer().restore(model_dir / "checkpoints" / str(step) / "state")
  return tree, [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_gradnorm_kill9_then_resume_is_bit_identical(tmp_path, clean_gin):
  reference = tmp_path / "reference"
  assert train.main(["--no_progress", *ARGS, f"--gin.MODEL_DIR={reference}"]) == 0
  killed = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, "-m", "mtl_jax.train", "--no_progress", *ARGS, f"--gin.MODEL_DIR={killed}"],
                          cwd=REPO, env=subprocess_env(devices=8), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not (killed / "checkpoints" / "4" / "meta").exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert (killed / "checkpoints" / "4").exists() and not (killed / "checkpoints" / "8").exists()
  assert train.main(["--no_progress", *ARGS, f"--gin.MODEL_DIR={killed}"]) == 0
  tree, want = _state(reference, 8)
  _, got = _state(killed, 8)
  assert "weighting" in tree and set(tree["weighting"]) == {"w", "initial_loss", "started", "adam"}
  assert not np.allclose(np.asarray(tree["weighting"]["w"]), 1.0)  # the weights did move
  assert len(want) == len(got)
  for a, b in zip(want, got):
    np.testing.assert_array_equal(a, b)
