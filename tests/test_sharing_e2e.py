"""Every sharing strategy trains end to end through the binary's main on the offline
quickstart mixture and lowers the logged training loss.

The runs are train.main in this process (conftest.run_main, one device via the mesh: a child
process each only added ~10 CPU-s of interpreter + TensorFlow start; the process boundary is
tested in test_train_binary.py), once per module. The loss is logged every step (a single
batch's loss is noisy: batches differ in their task mix) and the mean of the first 5 steps must
exceed the mean of the last 5.
"""

import pathlib

import gin
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorflow.python.framework import tensor_util

from conftest import ONE_DEVICE, run_main

pytestmark = pytest.mark.xdist_group("sharing_e2e")  # one worker under -n: the 5 runs are trained once

REPO = pathlib.Path(__file__).resolve().parents[1]
# run name -> (strategy, extra flags); soft also runs on the grouped layout, where its towers
# take the per-row-group route instead of per-example weight gathers.
RUNS = {name: (name, []) for name in ("soft", "sluice", "cross_stitch", "mmoe")}
RUNS["soft_grouped"] = ("soft", ["--gin_file=gin/mixing/grouped.gin", "--gin.BATCH_SIZE=30"])
STEPS = 30


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """name -> (MODEL_DIR, the run's result: returncode, stdout + stderr)."""
  out = {}
  for name, (strategy, extra) in RUNS.items():
    model_dir = tmp_path_factory.mktemp(f"e2e_{name}")
    out[name] = (model_dir, run_main(
        "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
        f"--gin_file=gin/sharing/{strategy}.gin", *extra, f"--gin.MODEL_DIR={model_dir}",
        f"--gin.TRAIN_STEPS={STEPS}", f"--gin.trainer.train.eval_period={STEPS}",
        "--gin.trainer.train.log_period=1", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}",
        ONE_DEVICE, check=False))  # one device, as a user runs it
  gin.clear_config()
  return out


def logged(model_dir: pathlib.Path, tag: str) -> list[float]:
  acc = ea.EventAccumulator(str(model_dir / "train"), size_guidance={ea.TENSORS: 0, ea.SCALARS: 0})
  acc.Reload()
  if tag in acc.Tags()["tensors"]:
    return [float(tensor_util.MakeNdarray(e.tensor_proto)) for e in acc.Tensors(tag)]
  return [e.value for e in acc.Scalars(tag)]


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
@pytest.mark.parametrize("name", sorted(RUNS))
def test_strategy_trains_through_main(runs, name):
  model_dir, proc = runs[name]
  out = proc.stdout + proc.stderr
  assert proc.returncode == 0, out[-4000:]
  layout = "grouped" if "grouped" in name else "mixed"
  assert f"sharing={RUNS[name][0]} " in out and f"layout={layout} " in out and "trunk=" in out, out[-2000:]
  assert (model_dir / "results.json").exists()
  loss = logged(model_dir, "loss")
  assert len(loss) == STEPS, loss
  first, last = sum(loss[:5]) / 5, sum(loss[-5:]) / 5
  assert last < first, f"{name}: loss did not go down: {loss}"
