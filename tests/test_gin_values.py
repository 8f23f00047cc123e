"""A bad literal count on the command line (--gin.TRAIN_STEPS=0) is refused before the heavy imports
(mtl_jax/gin_values.py) with the trainer's own one-line message; values it cannot read as literals,
and good values, are left to the trainer."""

import re
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env
from mtl_jax import gin_values


@pytest.mark.parametrize("binding, name, value", [
    ("TRAIN_STEPS = 0", "TRAIN_STEPS", 0), ("BATCH_SIZE=-3", "BATCH_SIZE", -3),
    ("TRAIN_STEPS = '5'", "TRAIN_STEPS", "5"), ("TRAIN_STEPS = 2.5", "TRAIN_STEPS", 2.5),
    ("trainer.train.eval_period = 0", "train.eval_period", 0), ("train.log_period = True", "train.log_period", True),
    ("trainer.train.eval_batch_size = 0", "train.eval_batch_size", 0)])
def test_bad_literals_give_the_trainers_message(binding, name, value):
  from mtl_jax.run import trainer
  with pytest.raises(ValueError) as early:
    gin_values.check([binding])
  with pytest.raises(ValueError) as late:
    trainer._positive_int(name, value)
  assert str(early.value) == str(late.value)


def test_good_values_references_and_other_keys_pass():
  gin_values.check(["TRAIN_STEPS = 0", "TRAIN_STEPS = 40"])  # the last binding wins, as in gin
  gin_values.check(["TRAIN_STEPS = %STEPS", "BATCH_SIZE = 16", "trainer.train.eval_batch_size = None",
                    "other.train.eval_period = 0", "optim.make_optimizer.learning_rate = 0", "SEED = 0"])


def test_the_binary_refuses_before_importing_tensorflow(tmp_path):
  proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "mtl_jax.train", "--gin_file=gin/runs/quickstart.gin",
                         "--gin.TRAIN_STEPS=0", f"--gin.MODEL_DIR={tmp_path / 'run'}"], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "mtl-train: error: TRAIN_STEPS must be a positive int, got 0; set --gin.TRAIN_STEPS=<int>")
  for module in ("tensorflow", "jax", "seqio"):  # -X importtime lines: '...|   <module>'
    assert not re.search(rf"\|\s+{module}$", proc.stderr, re.M), module
  assert re.search(r"\|\s+gin$", proc.stderr, re.M)  # the check itself reads importtime's output
  assert not (tmp_path / "run").exists()
