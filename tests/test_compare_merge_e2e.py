"""mtl-compare's merge axis end to end through the CLI (e2e: ~60 CPU-s): gin/experiments/merge_vs_cotrain_minilm.gin
at tiny size (the tiny model fine-tuned from one init_from source instead of MiniLM, 2 steps, seed 0, hard as
the co-trained arm, three of its merge methods with small grids). The merged arms come from the grid's own
single-task cells (no extra training), are reported beside hard and single-task with the same statistics on
the test split of the validation pick, and a rerun trains and merges nothing. Cells and merges run in this
process (conftest.run_cell_in_process; mtl-merge's main()), as the children would."""

import json

import pytest

from conftest import ONE_DEVICE, run_cell_in_process, run_main
from mtl_jax.compare import cli

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("compare_merge_e2e")]

TINY = {"TASK_FEATURE_LENGTHS": "{'inputs': 16}", "BATCH_SIZE": "16", "TRAIN_STEPS": "2",
        "trainer.train.eval_period": "2", "trainer.train.checkpoint_period": "2",
        "trainer.train.eval_batch_size": "256", "make_optimizer.learning_rate": "0.05",
        "make_optimizer.warmup_steps": "1"}
TASKS = ["bbc_topic", "rotten_tomatoes", "vader_tweets"]


class Launcher:
  def __init__(self):
    self.launched = []

  def __call__(self, argv, log_path, env):
    del log_path, env
    self.launched.append(argv[2])
    if argv[1:3] == ["-m", "mtl_jax.merge"]:
      from mtl_jax.merge import cli as merge_cli
      return merge_cli.main(list(argv[3:]))
    return run_cell_in_process(argv)


def test_merge_vs_cotrain_experiment_at_tiny_size(tmp_path):
  source = tmp_path / "source"  # the shared starting point (MiniLM in the full experiment)
  run_main("--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin", ONE_DEVICE,
           *(f"--gin.{k}={v}" for k, v in TINY.items()), f"--gin.MODEL_DIR='{source}'")
  exp_dir = tmp_path / "exp"
  argv = ["--experiment=gin/experiments/merge_vs_cotrain_minilm.gin", "--gin_file=gin/runs/quickstart.gin",
          "--gin_file=gin/models/tiny.gin", "--strategies=hard", "--seeds=0", "--parallel=1",
          f"--exp_dir={exp_dir}",
          *(f"--binding={k}={v}" for k, v in TINY.items()), f"--binding=init_from.model_dir='{source}'",
          "--gin.experiment.merge=['task_arithmetic', 'ties', 'regmean']",
          "--gin.experiment.merge_grid={'task_arithmetic': {'scaling': [0.3, 1.0]}, "
          "'ties': {'density': [0.5], 'scaling': [1.0]}}"]
  launcher, lines = Launcher(), []
  assert cli.main(argv, launcher=launcher, env={}, echo=lines.append) == 0, "\n".join(lines)
  assert sorted(launcher.launched) == ["mtl_jax.merge"] * 3 + ["mtl_jax.train"] * 4  # 3 singles + hard, 3 merges

  result = json.loads((exp_dir / "results.json").read_text())
  groups = {g["strategy"]: g for g in result["groups"]}
  assert set(groups) == {"single", "hard", "merge_task_arithmetic", "merge_ties", "merge_regmean"}
  for method in ("task_arithmetic", "ties", "regmean"):
    group, run = groups[f"merge_{method}"], exp_dir / "runs" / f"merge_{method}__quickstart__seed0"
    merged = json.loads((run / "results.json").read_text())
    record = json.loads((run / "merge.json").read_text())
    assert record["method"] == method and sorted(s["model_dir"] for s in record["sources"]) == [
        str(exp_dir / "runs" / f"single__{t}__seed0") for t in TASKS]  # the grid's own single-task cells
    assert group["seeds"] == [0] and sorted(group["tasks"]) == TASKS and group["delta_m"]["mean"] is not None
    for task in TASKS:  # compared on the test split of the validation pick, as every cell
      assert group["tasks"][task]["mean"] == pytest.approx(merged["test"][task]["headline"])
    best = max(record["grid"], key=lambda g: g["validation_average"])
    assert record["hparams"] == best["hparams"] and merged["average"] == pytest.approx(best["validation_average"])
  assert len(json.loads((exp_dir / "runs/merge_task_arithmetic__quickstart__seed0/merge.json").read_text())["grid"]) == 2
  report = (exp_dir / "report.md").read_text()
  assert "## Merged arms" in report and "| merge_ties | quickstart | 0 | density=0.5 scaling=1.0:" in report

  rerun, lines = Launcher(), []
  assert cli.main(argv, launcher=rerun, env={}, echo=lines.append) == 0 and rerun.launched == []
  assert "mtl-compare: 3 merged arms: 3 done, 0 to merge" in lines
