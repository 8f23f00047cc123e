"""mtl-compare end to end, once: hard x quickstart x seed 0 plus the 3 tasks' single-task baselines
(4 cells of the tiny model, 4 steps each, one at a time), then a rerun that must launch nothing.
The first cell runs the REAL train binary as a child process, exactly as mtl-compare launches it; the
other three run the same argv through the binary's main() in this process, on one device as a child
would (each child costs ~8 CPU-s of interpreter and TensorFlow start; test_train_binary.py covers the
process boundary too). Multi-seed aggregation (std, noise marks) is covered on fake cells in
test_compare_fakes.py / test_compare_aggregate.py."""

import json

from test_compare_report import png_size

from mtl_jax.compare import cli, runner
from conftest import TINY_ARGS, run_cell_in_process, subprocess_env
import pytest

STEPS = 4


class CountingLauncher:
  """Counts launches; the first goes through a real child process, the rest through main() in-process."""

  def __init__(self):
    self.launched = []

  def __call__(self, argv, log_path, env):
    self.launched.append(list(argv))
    if len(self.launched) == 1:
      return runner.subprocess_launcher(argv, log_path, env)
    return run_cell_in_process(argv)


def _argv(exp_dir):
  bindings = [a.replace("--gin.", "--binding=", 1) for a in TINY_ARGS if a.startswith("--gin.")]
  return ["--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin", "--strategies=hard",
          "--mixtures=quickstart", "--seeds=0", *bindings, f"--binding=TRAIN_STEPS={STEPS}",
          "--binding=trainer.train.eval_period=2", "--binding=trainer.train.log_period=2",
          f"--binding=trainer.train.checkpoint_period={STEPS}", "--binding=trainer.train.keep_checkpoints=1",
          f"--exp_dir={exp_dir}", "--name=real_e2e"]


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_real_grid_end_to_end_then_rerun_launches_nothing(tmp_path):
  # One test, not a module fixture shared by two: under pytest-xdist two tests could land on
  # two workers and run the 4 trainings twice, concurrently.
  env = subprocess_env()  # one CPU device per cell, as mtl-train
  launcher, lines = CountingLauncher(), []
  rc = cli.main(_argv(tmp_path), launcher=launcher, env=env, echo=lines.append)
  assert rc == 0, "\n".join(lines)
  assert len(launcher.launched) == 1 + 3
  data = json.loads((tmp_path / "results.json").read_text())
  assert {c["status"] for c in data["cells"]} == {"done"} and len(data["cells"]) == 4
  hard = next(g for g in data["groups"] if g["strategy"] == "hard")
  assert hard["seeds"] == [0] and set(hard["tasks"]) == {"bbc_topic", "rotten_tomatoes", "vader_tweets"}
  assert hard["delta_m"]["mean"] is not None and hard["params_total"] > 0
  assert all(c["wall_s"] > 0 and c["params"]["total"] > 0 for c in data["cells"])
  single = next(g for g in data["groups"] if g["strategy"] == "single")
  assert single["params_total"] == sum(c["params"]["total"] for c in data["cells"]
                                       if c["kind"] == "single" and c["seed"] == 0)
  for name in ("results.csv", "report.md"):
    assert (tmp_path / name).stat().st_size > 0
  md = (tmp_path / "report.md").read_text()
  assert "## quickstart" in md and "| bbc_topic (f1_macro) |" in md and "| vader_tweets (pearson) |" in md
  pngs = {p.name: png_size(p) for p in (tmp_path / "plots").glob("*.png")}
  assert set(pngs) == {"curves__quickstart.png", "bars__quickstart.png"}
  assert all(w >= 400 and h >= 250 for w, h in pngs.values())

  rerun, lines = CountingLauncher(), []
  assert cli.main(_argv(tmp_path), launcher=rerun, env=env, echo=lines.append) == 0
  assert rerun.launched == []
  assert any("4 cells: 4 finished, 0 to run" in line for line in lines)
