"""mtl-compare grid: cell expansion, baselines, axes, gin specs, validation, done/skip rule."""

import json

import pytest

from mtl_jax.compare import grid, runner

BASE = dict(gin_files=["gin/runs/quickstart.gin"], strategies=["hard"],
            tasks={"mixA": ["taskA", "taskB"], "mixB": ["taskB", "taskC"]})


def test_cells_seed_major_with_deduplicated_baselines():
  exp = grid.Experiment(**BASE, mixtures=["mixA", "mixB"], seeds=[0, 1])
  ids = [c.cell_id for c in exp.cells()]
  assert ids == ["hard__mixA__seed0", "single__taskA__seed0", "single__taskB__seed0",
                 "hard__mixB__seed0", "single__taskC__seed0",
                 "hard__mixA__seed1", "single__taskA__seed1", "single__taskB__seed1",
                 "hard__mixB__seed1", "single__taskC__seed1"]
  cell = exp.cells()[1]
  assert cell.kind == "single" and cell.mixture == "taskA"
  assert cell.argv(["B"], "/x") == ["B", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/sharing/hard.gin",
                                    "--gin.MODEL_DIR=/x", "--gin.MIXTURE_OR_TASK_NAME=taskA",
                                    "--gin.trainer.train.seed=0"]


def test_axes_gin_files_and_bindings_and_mtl_only():
  exp = grid.Experiment(**{**BASE, "tasks": {"mixA": ["taskA"]}}, mixtures=["mixA"], seeds=[0],
                        bindings={"TRAIN_STEPS": 20, "TASK_FEATURE_LENGTHS": {"inputs": 32}},
                        axes={"model": ["gin/models/tiny.gin", "gin/models/small.gin"],
                              "optim.make_optimizer.learning_rate": [1e-3, 3e-3]},
                        mtl_only_axes=["optim.make_optimizer.learning_rate"])
  cells = exp.cells()
  mtl = [c for c in cells if c.kind == "mtl"]
  single = [c for c in cells if c.kind == "single"]
  assert len(mtl) == 4 and len(single) == 2  # baselines vary with the model, not the learning rate
  first = mtl[0]
  assert first.cell_id == "hard__mixA__model=tiny__learning_rate=0.001__seed0"
  assert first.gin_files[-1] == "gin/models/tiny.gin"
  args = first.argv([], "/m")
  assert "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}" in args
  assert "--gin.optim.make_optimizer.learning_rate=0.001" in args
  assert first.train_steps() == 20
  assert single[0].axes == (("model", "tiny"),)


@pytest.mark.parametrize("fields, message", [
    ({"strategies": ["no_such_strategy"]}, "gin/sharing/no_such_strategy.gin"),
    ({"strategies": ["single"]}, "baseline label"),
    ({"bindings": {"MODEL_DIR": "/x"}}, "set by the grid"),
    ({"seeds": [0, 0]}, "duplicates"),
    ({"mixtures": []}, "mixtures is empty"),
    ({"mtl_only_axes": ["rate"]}, "not an axis"),
])
def test_bad_grids_fail_with_one_clear_error(fields, message):
  exp = grid.Experiment(**{**BASE, "mixtures": ["mixA"], **fields})
  with pytest.raises(ValueError, match=message):
    exp.cells()


def test_gin_spec_and_overrides(tmp_path):
  spec = tmp_path / "exp.gin"
  spec.write_text("from mtl_jax.compare import grid\n"
                  "experiment.name = 'demo'\n"
                  "experiment.gin_files = ['gin/runs/quickstart.gin']\n"
                  "experiment.mixtures = ['synthetic_r50_t2']\n"
                  "experiment.seeds = [0, 1, 2]\n")
  exp = grid.load([str(spec)], ["experiment.seeds = [4]"], parallel=2)
  assert (exp.name, exp.seeds, exp.parallel) == ("demo", (4,), 2)
  assert [c.mixture for c in exp.cells()] == ["synthetic_r50_t2", "synthetic_r50_t2_task0", "synthetic_r50_t2_task1"]
  with pytest.raises(ValueError, match="unknown experiment field"):
    grid.load([str(spec)], ["experiment.sedes = [4]"])


def test_the_shipped_experiments_parse():
  sweep = grid.load(["gin/experiments/relatedness_sweep.gin"])
  cells = sweep.cells()
  assert len(cells) == 5 * 4 * 6 + 5 * 2 * 6 and sweep.seeds_per_step == 6  # 6 seeds, one vmapped step per cell
  assert {c.strategy for c in cells} == {"hard", "soft", "sluice", "cross_stitch", "single"}
  offline = grid.load(["gin/experiments/offline_quickstart.gin"])
  assert offline.mixtures == ("quickstart",) and offline.gin_files == ("gin/runs/quickstart.gin",)
  assert grid.task_modules(offline.gin_files) == ["tasks.offline"]
  mixing = grid.load(["gin/experiments/offline_mixing.gin"])
  cells = mixing.cells(tasks_of=lambda m: [f"task{i}" for i in range(8)])  # no corpus loading here
  assert sum(c.kind == "mtl" for c in cells) == 2 * 3 * 3 and sum(c.kind == "single" for c in cells) == 8 * 3
  assert cells[0].gin_files[-1] == "gin/mixing/proportional.gin" and cells[0].axes == (("mixing", "proportional"),)


def test_done_means_final_step_and_same_arguments(tmp_path):
  exp = grid.Experiment(**BASE, mixtures=["mixA"], bindings={"TRAIN_STEPS": 10})
  cell = exp.cells()[0]
  model_dir = runner.cell_dir(tmp_path, cell)
  model_dir.mkdir(parents=True)
  assert not runner.is_done(cell, model_dir)
  (model_dir / "results.json").write_text(json.dumps({"step": 5, "tasks": {}, "average": 0}))
  assert not runner.is_done(cell, model_dir)  # an unfinished run: resume it
  (model_dir / "results.json").write_text(json.dumps({"step": 10, "tasks": {}, "average": 0}))
  assert not runner.is_done(cell, model_dir)  # its final checkpoint is not committed
  for item in ("state", "meta"):
    (model_dir / "checkpoints" / "10" / item).mkdir(parents=True)
  assert runner.is_done(cell, model_dir)
  (model_dir / runner.RUN_RECORD).write_text(json.dumps({"args": ["--gin.TRAIN_STEPS=9"]}))
  assert not runner.is_done(cell, model_dir)  # launched with other arguments
  no_budget = grid.Experiment(**BASE, mixtures=["mixA"]).cells()[0]  # TRAIN_STEPS from config.gin
  other = runner.cell_dir(tmp_path / "b", no_budget)
  other.mkdir(parents=True)
  (other / "results.json").write_text(json.dumps({"step": 10, "tasks": {}, "average": 0}))
  assert not runner.is_done(no_budget, other)
  (other / "config.gin").write_text("# Macros:\nBATCH_SIZE = 32\nTRAIN_STEPS = 10\n")
  for item in ("state", "meta"):
    (other / "checkpoints" / "10" / item).mkdir(parents=True)
  assert runner.is_done(no_budget, other)
