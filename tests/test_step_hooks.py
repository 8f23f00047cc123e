"""The trainer's step-hook seam: hooks see every applied step's state and batch, and close at the end."""

import jax
import numpy as np
import pytest

from mtl_jax.step import step_hooks
from mtl_jax import train
from conftest import ONE_DEVICE

BASE = ["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.BATCH_SIZE=24", "--gin.TRAIN_STEPS=3",
        "--gin.trainer.train.eval_batch_size=512", ONE_DEVICE]
SEEN = []


class _Recorder:
  def __init__(self, context):
    SEEN.append(("start", tuple(context.task_names), context.lead))

  def after_step(self, step, state, batch):
    SEEN.append(("step", step, int(jax.device_get(state.step)), np.asarray(batch["task_id"]).shape[0]))

  def close(self, step, state):
    SEEN.append(("close", step))


step_hooks.register("test_recorder")(_Recorder)


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_hook_sees_each_step_state_and_batch_then_closes(tmp_path):
  SEEN.clear()
  assert train.main([*BASE, f"--gin.MODEL_DIR={tmp_path / 'run'}", "--gin.step_hooks.names=['test_recorder']"]) == 0
  assert SEEN[0][0] == "start" and len(SEEN[0][1]) == 3 and SEEN[0][2] is True
  assert SEEN[1:] == [("step", 1, 1, 24), ("step", 2, 2, 24), ("step", 3, 3, 24), ("close", 3)]


def test_unknown_hook_is_one_clear_error():
  with pytest.raises(ValueError, match="unknown step hook 'afinity'"):
    step_hooks.build(None, names=["afinity"])
  with pytest.raises(ValueError, match=r"must be a list of hook names, got the string 'affinity'"):
    step_hooks.build(None, names="affinity")
