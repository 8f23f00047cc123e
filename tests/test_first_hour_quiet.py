"""Issue #26 item 6: a pretrained run's stderr holds no TF C++ (E0000 / W0000) or absl WARNING lines.

TF's oneDNN note "oneDNN supports DT_INT64 only on platforms with AVX-512" (E0000) appears on CPUs
without AVX-512; TF is only the input pipeline here, so mtl_jax's TF import hook turns oneDNN off
(TF_ENABLE_ONEDNN_OPTS=0, mtl_jax/quiet_tf.py). This box has AVX-512, so the run checks the stderr
and the switch itself. (mtl-predict's stderr: tests/test_first_hour_predict.py.)"""

import os
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env
from pretrained_fixtures import write_tiny_checkpoint


def _noise(stderr: str) -> list[str]:
  return [l for l in stderr.splitlines() if l.startswith(("E0000", "W0000", "WARNING:absl")) or "oneDNN" in l]


@pytest.mark.matrix
def test_pretrained_run_stderr_is_quiet(tmp_path):
  ckpt = write_tiny_checkpoint(tmp_path / "ckpt", d=32, heads=2, ff=64, layers=1, pooling="mean")
  env = subprocess_env()
  env.pop("TF_ENABLE_ONEDNN_OPTS", None)
  proc = subprocess.run([sys.executable, "-m", "mtl_jax.train", "--gin_file=gin/runs/quickstart.gin",
                         "--gin_file=gin/models/tiny.gin", "--gin_file=gin/pretrained/minilm.gin",
                         f"--gin.pretrained.checkpoint={ckpt}", "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}",
                         "--gin.BATCH_SIZE=8", "--gin.TRAIN_STEPS=2", f"--gin.MODEL_DIR={tmp_path / 'run'}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _noise(proc.stderr) == [], proc.stderr
  assert "\r" not in proc.stderr  # no progress bar when stderr is not a terminal


def test_tf_import_turns_onednn_off(tmp_path):
  env = subprocess_env()
  env.pop("TF_ENABLE_ONEDNN_OPTS", None)
  code = "import mtl_jax, os, tensorflow; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stderr
  assert _noise(proc.stderr) == []


def test_progress_bar_only_on_a_terminal_unless_asked(monkeypatch):
  from mtl_jax import train

  class Stream:
    def __init__(self, tty):
      self.tty = tty

    def isatty(self):
      return self.tty

  def shown(argv, stdout_tty, stderr_tty):
    monkeypatch.setattr(sys, "stdout", Stream(stdout_tty))
    monkeypatch.setattr(sys, "stderr", Stream(stderr_tty))
    args, _ = train.parse_args(["--gin_file=gin/runs/quickstart.gin", *argv])
    return train.show_progress(args)

  assert shown([], True, True) is True
  assert shown([], False, True) is False and shown([], True, False) is False  # a log file: no carriage returns
  assert shown(["--progress"], False, False) is True
  assert shown(["--no_progress"], True, True) is False
