"""A CPU-only start prints no TensorFlow/CUDA notes ("Could not find cuda drivers",
"failed call to cuInit", ...) even though TF_CPP_MIN_LOG_LEVEL is unset, and real stderr
output written during the filtered import still comes through."""

import os
import subprocess
import sys

from conftest import REPO, subprocess_env
from mtl_jax import quiet_tf

NOTES = ("Could not find cuda drivers", "cuInit", "absl::InitializeLog", "oneDNN", "cpu_feature_guard")


def quiet_env():
  env = subprocess_env()
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  return env


def test_binary_start_prints_only_its_own_error_line():
  # the real entry point: argument parsing, `import tensorflow`, TF's GPU probe, then a one-line gin error
  proc = subprocess.run([sys.executable, "-m", "mtl_jax.train", "--gin_file=gin/runs/quickstart.gin",
                         "--gin.MODEL_DIR=/tmp/never_written", "--gin.TRAIN_STEPS=0"], cwd=REPO,
                        env=quiet_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert not any(note in proc.stderr for note in NOTES), proc.stderr
  assert [l for l in proc.stderr.splitlines() if l.strip()] == [l for l in proc.stderr.splitlines()
                                                               if l.startswith("mtl-train: error:")]
  assert "TRAIN_STEPS must be a positive int, got 0" in proc.stderr


def test_filter_drops_only_the_known_notes(capfd):
  with quiet_tf.filtered_stderr():
    os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n")
    os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")
    os.write(2, b"a real warning the user must see\n")
  err = capfd.readouterr().err
  assert err == "a real warning the user must see\n"
