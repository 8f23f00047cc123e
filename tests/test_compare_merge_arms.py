"""mtl-compare's merge axis, cheap half (default suite, no training): which arms a grid plans from which
single-task cells, the one-line refusals (nothing written), an arm whose sources are unfinished waits,
and report.md's pick table. The end-to-end half (tiny cells, real merges): test_compare_merge_e2e.py."""

import json

import pytest

from mtl_jax.compare import cli, grid, merge_arms

GIN = "gin/experiments/merge_vs_cotrain_minilm.gin"
TASKS = "experiment.tasks = {'quickstart': ['rotten_tomatoes', 'bbc_topic', 'vader_tweets']}"  # no seqio import


def test_the_experiment_plans_one_arm_per_method_and_seed_from_that_seeds_singles():
  exp = grid.load([GIN], [TASKS])
  cells = exp.cells()
  arms = merge_arms.plan(exp, cells)
  methods = ["average", "task_arithmetic", "ties", "dare_linear", "dare_ties", "fisher", "regmean"]
  assert list(exp.merge) == methods
  assert len(cells) == 3 * (3 + 3) and len(arms) == 3 * 7  # 3 seeds x (3 singles + hard, soft, adapters)
  for arm in arms:
    assert arm.cell.kind == "mtl" and arm.cell.strategy == "merge_" + arm.method and arm.cell.mixture == "quickstart"
    assert [s.cell_id for s in arm.sources] == [f"single__{t}__seed{arm.cell.seed}"
                                                for t in ("bbc_topic", "rotten_tomatoes", "vader_tweets")]
    assert arm.cell.train_steps() == 32 and arm.cell.cell_id == f"merge_{arm.method}__quickstart__seed{arm.cell.seed}"
  assert sorted({(a.method, a.cell.seed) for a in arms}) == sorted((m, s) for m in methods for s in (0, 1, 2))


def test_tuned_singles_give_one_arm_per_setting_merged_from_that_settings_cells():
  exp = grid.load([GIN], [TASKS, "experiment.merge = 'ties'", "experiment.seeds = [0]",
                          "experiment.tune = {'optim.make_optimizer.learning_rate': [1e-4, 3e-4]}"])
  arms = merge_arms.plan(exp, exp.cells())
  assert [a.cell.axes for a in arms] == [(("optim.make_optimizer.learning_rate", "0.0001"),),
                                         (("optim.make_optimizer.learning_rate", "0.0003"),)]
  for arm in arms:  # each setting's arm merges the singles trained with that setting
    assert {s.axes for s in arm.sources} == {arm.cell.axes} and len(arm.sources) == 3


@pytest.mark.parametrize("binding, needle", [
    ("experiment.merge = ['tiez']", "unknown merge method 'tiez'; did you mean 'ties'?"),
    ("experiment.baselines = False", "builds its arms from the single-task cells"),
    ("experiment.baseline_strategy = 'soft'", "experiment.baseline_strategy is 'soft'"),
    ("experiment.merge_grid = {'ties': {'lambda': [0.5]}}", "merge.grid / --grid lambda"),
    ("experiment.merge_grid = {'fisher': {}}\nexperiment.merge = ['ties']", "names 'fisher', which is not in"),
])
def test_bad_merge_axis_is_one_line_and_writes_nothing(tmp_path, capsys, binding, needle):
  exp_dir = tmp_path / "exp"
  rc = cli.main([f"--experiment={GIN}", f"--exp_dir={exp_dir}", f"--gin.{TASKS}",
                 *(f"--gin.{b}" for b in binding.split("\n"))])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and needle in err and len(err.splitlines()) == 1, err
  assert not exp_dir.exists()


def test_an_arm_whose_single_cells_are_unfinished_waits_and_launches_nothing(tmp_path):
  exp = grid.load([GIN], [TASKS, "experiment.seeds = [0]", "experiment.merge = ['ties']"])
  arms = merge_arms.plan(exp, exp.cells())
  launched, lines = [], []
  status = merge_arms.run(arms, tmp_path, launcher=lambda *a: launched.append(a) or 0, echo=lines.append)
  assert status == {"merge_ties__quickstart__seed0": "waiting"} and not launched
  assert "single__bbc_topic__seed0" in lines[-1] and not (tmp_path / "runs").exists()


def test_report_section_lists_each_arms_grid_and_pick(tmp_path):
  record = {"method": "ties", "hparams": {"density": 0.2, "scaling": 1.0},
            "grid": [{"hparams": {"density": 0.1, "scaling": 1.0}, "validation_average": 0.5},
                     {"hparams": {"density": 0.2, "scaling": 1.0}, "validation_average": 0.625}]}
  (tmp_path / "merge.json").write_text(json.dumps(record))
  cells = [{"strategy": "merge_ties", "status": "done", "model_dir": str(tmp_path), "axes": {}, "mixture": "q",
            "seed": 1}, {"strategy": "hard", "status": "done", "model_dir": str(tmp_path), "axes": {}}]
  lines = merge_arms.markdown(cells)
  assert lines[0] == "## Merged arms" and lines[-1] == (
      "| merge_ties | q | 1 | density=0.1 scaling=1.0: 0.5000; density=0.2 scaling=1.0: 0.6250 | density=0.2 scaling=1.0 |")
  assert merge_arms.markdown(cells[1:]) == []
