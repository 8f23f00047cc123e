"""Test setup: 8 fake CPU devices (sharding tests), quiet TF, a tiny offline task set.

XLA_FLAGS must be set before jax is imported anywhere in the process.
"""

import os
import subprocess
import sys
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_binary(*args, env_extra=None, timeout=600, check=True):
  """Runs `python -m mtl_jax.train ARGS` from the repo root on ONE CPU device."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(env_extra or {})
  proc = subprocess.run([sys.executable, "-m", "mtl_jax.train", "--no_progress", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"binary failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
  return proc


TINY_ARGS = ("--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
             "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}", "--gin.BATCH_SIZE=16")


@pytest.fixture
def tiny_args():
  return TINY_ARGS
