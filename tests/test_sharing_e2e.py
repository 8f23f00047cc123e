"""Every sharing strategy trains end to end through the binary on the offline
quickstart mixture and lowers the logged training loss.

The runs start together (one subprocess each, one CPU device) when the first test
asks for them, so the file costs about the slowest run, not their sum. The loss is
logged every step (a single batch's loss is noisy: batches differ in their task
mix) and the mean of the first 5 steps must exceed the mean of the last 5.
"""

import pathlib
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorflow.python.framework import tensor_util

from conftest import subprocess_env

pytestmark = pytest.mark.xdist_group("sharing_e2e")  # one worker under -n: the 5 binary runs start once, on one worker

REPO = pathlib.Path(__file__).resolve().parents[1]
# run name -> (strategy, extra flags); soft also runs on the grouped layout, where its towers
# take the per-row-group route instead of per-example weight gathers.
RUNS = {name: (name, []) for name in ("soft", "sluice", "cross_stitch", "mmoe")}
RUNS["soft_grouped"] = ("soft", ["--gin_file=gin/mixing/grouped.gin", "--gin.BATCH_SIZE=30"])
STEPS = 30


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  env = subprocess_env()  # one device, as a user runs it
  procs = {}
  for name, (strategy, extra) in RUNS.items():
    model_dir = tmp_path_factory.mktemp(f"e2e_{name}")
    cmd = [sys.executable, "-m", "mtl_jax.train", "--no_progress",
           "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
           f"--gin_file=gin/sharing/{strategy}.gin", *extra, f"--gin.MODEL_DIR={model_dir}",
           f"--gin.TRAIN_STEPS={STEPS}", f"--gin.trainer.train.eval_period={STEPS}",
           "--gin.trainer.train.log_period=1", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}"]
    procs[name] = (model_dir, subprocess.Popen(cmd, cwd=REPO, env=env, text=True,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
  yield procs
  for _, proc in procs.values():
    if proc.poll() is None:
      proc.kill()


def logged(model_dir: pathlib.Path, tag: str) -> list[float]:
  acc = ea.EventAccumulator(str(model_dir / "train"), size_guidance={ea.TENSORS: 0, ea.SCALARS: 0})
  acc.Reload()
  if tag in acc.Tags()["tensors"]:
    return [float(tensor_util.MakeNdarray(e.tensor_proto)) for e in acc.Tensors(tag)]
  return [e.value for e in acc.Scalars(tag)]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_strategy_trains_through_the_binary(runs, name):
  model_dir, proc = runs[name]
  out, _ = proc.communicate(timeout=900)
  assert proc.returncode == 0, out[-4000:]
  layout = "grouped" if "grouped" in name else "mixed"
  assert f"sharing={RUNS[name][0]} " in out and f"layout={layout} " in out and "trunk=" in out, out[-2000:]
  assert (model_dir / "results.json").exists()
  loss = logged(model_dir, "loss")
  assert len(loss) == STEPS, loss
  first, last = sum(loss[:5]) / 5, sum(loss[-5:]) / 5
  assert last < first, f"{name}: loss did not go down: {loss}"
