"""mtl-compare --seeds_per_step=K (compare/seed_groups.py): a cell's seeds launched K at a time as one
`trainer.train.seeds` trainer; the grid's cells, their directories and the report rows are those of the
same grid without the option. An in-process fake trainer (no training); the real trainer through
mtl-compare --seeds_per_step is test_seeds_in_step.py's e2e test (its cells equal separate runs)."""

import ast
import csv
import json
import os
import pathlib
import re

import pytest

from test_compare_fakes import write_cell

from mtl_jax.compare import cli, grid, seed_groups
from mtl_jax.run import lock, seeds_in_step


class FakeTrainer:
  """A launcher standing in for mtl-train: one cell per seed of its argv (trainer.train.seed or .seeds),
  written where the trainer would (run/seeds_in_step.lane_dir), holding the locks it was handed."""

  def __init__(self):
    self.launches, self.init_from = [], []

  def __call__(self, argv, log_path, env):
    args = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    strategy = pathlib.Path([a for a in argv if a.startswith("--gin_file=")][-1]).stem
    seeds = (json.loads(args["gin.trainer.train.seeds"]) if "gin.trainer.train.seeds" in args
             else [int(args["gin.trainer.train.seed"])])
    assert len(env[lock.TOKEN_ENV].split(",")) == len(seeds)
    self.launches.append(("seeds" if "gin.trainer.train.seeds" in args else "seed", seeds))
    lane_dirs = ast.literal_eval(args.get("gin.lanes.model_dirs", "None"))  # lanes of several starting runs
    self.init_from.append(ast.literal_eval(args["gin.lanes.init_from"]) if lane_dirs
                          else args.get("gin.init_from.model_dir"))
    for i, s in enumerate(seeds):
      model_dir = (pathlib.Path(lane_dirs[i]) if lane_dirs
                   else seeds_in_step.lane_dir(args["gin.MODEL_DIR"], s) if "gin.trainer.train.seeds" in args
                   else pathlib.Path(args["gin.MODEL_DIR"]))
      os.environ[lock.TOKEN_ENV] = env[lock.TOKEN_ENV]  # the trainer adopts its launcher's lock (run/lock.py)
      try:
        lock.hold(model_dir)
      finally:
        del os.environ[lock.TOKEN_ENV]
      write_cell(model_dir, strategy, args["gin.MIXTURE_OR_TASK_NAME"], s, int(args["gin.TRAIN_STEPS"]))
    lock.release_all()
    return 0


def _argv(exp_dir, *extra):
  return ["--gin_file=gin/base.gin", "--strategies=hard,sluice", "--mixtures=synthetic_r0_t2", "--seeds=0,1,2",
          "--binding=TRAIN_STEPS=10", f"--exp_dir={exp_dir}", "--name=seeds", *extra]


def _rows(exp_dir):
  """The report's rows without what differs between any two runs (wall time, where they ran)."""
  data = json.loads((exp_dir / "results.json").read_text())
  drop = re.compile(r"wall_s|model_dir|attempts")
  clean = lambda x: ({k: clean(v) for k, v in x.items() if not drop.search(k)} if isinstance(x, dict)
                     else [clean(v) for v in x] if isinstance(x, list) else x)
  with open(exp_dir / "results.csv") as f:
    rows = [clean(row) for row in csv.DictReader(f)]
  return clean(data["cells"]), clean(data["groups"]), rows


def test_seeds_per_step_gives_the_same_cells_and_report(tmp_path):
  plain, grouped = FakeTrainer(), FakeTrainer()
  assert cli.main(_argv(tmp_path / "plain"), launcher=plain, env={}, echo=lambda _: None) == 0
  lines = []
  assert cli.main(_argv(tmp_path / "grouped", "--seeds_per_step=2"), launcher=grouped, env={},
                  echo=lines.append) == 0
  assert plain.launches == [("seed", [s]) for s in (0, 1, 2) for _ in range(4)]  # hard, sluice, 2 baselines
  # seeds 0 and 1 of each cell in one trainer; seed 2, alone, with the cell's own command
  assert sorted(grouped.launches) == [("seed", [2])] * 4 + [("seeds", [0, 1])] * 4
  assert any("12 to run as 8 launches of up to 2 seeds" in line for line in lines), lines
  dirs = lambda root: sorted(p.name for p in (root / "runs").iterdir())
  assert dirs(tmp_path / "plain") == dirs(tmp_path / "grouped") and len(dirs(tmp_path / "plain")) == 12
  assert _rows(tmp_path / "plain") == _rows(tmp_path / "grouped")
  # recorded with each cell's own arguments: a run without the option finds every cell finished
  again = FakeTrainer()
  assert cli.main(_argv(tmp_path / "grouped"), launcher=again, env={}, echo=lines.append) == 0
  assert again.launches == []


def test_group_command_is_the_cells_command_with_their_seeds():
  exp = grid.Experiment(gin_files=("gin/base.gin",), strategies=("hard",), mixtures=("synthetic_r0_t2",),
                        seeds=(3, 5, 7), baselines=False, bindings={"TRAIN_STEPS": 4})
  cells = exp.cells()
  groups = seed_groups.groups(cells, 2)
  assert [[c.seed for c in g] for g in groups] == [[3, 5], [7]]
  argv = seed_groups.group_argv(groups[0], "/e", ("mtl-train",))
  one = cells[0].argv(("mtl-train",), "/e/runs/" + cells[0].cell_id)
  assert argv[-1] == "--gin.trainer.train.seeds=[3, 5]"
  assert [a for a in argv[:-1] if "MODEL_DIR" not in a] == [a for a in one if "MODEL_DIR" not in a
                                                            and "train.seed=" not in a]
  template = next(a for a in argv if a.startswith("--gin.MODEL_DIR=")).split("=", 1)[1]
  assert [str(seeds_in_step.lane_dir(template, c.seed)) for c in groups[0]] == [
      f"/e/runs/{c.cell_id}" for c in groups[0]]


@pytest.mark.parametrize("k, binding, named", [
    (0, "trainer.train.seed", "seeds_per_step must be an int >= 1, got 0"),
    (2, "my.seed", "needs experiment.seed_binding='trainer.train.seed'"),
])
def test_bad_seeds_per_step_refused(k, binding, named):
  with pytest.raises(ValueError, match=re.escape(named)):
    seed_groups.check(k, binding)


def test_a_grouped_cells_parameter_counts_come_from_the_groups_log(tmp_path):
  """The seeds after the first log only a pointer to the group's log: their trainable count is the group's start
  line (a frozen-trunk arm's 1,791,375), not run_spec.json's total (which made the Dec 4 PEFT report's mean wrong)."""
  from mtl_jax.compare import collect
  start = ("mtl_jax: sharing=adapters tasks=3 layout=mixed parameters embedder=11,918,592 heads=5,775 "
           "trunk=12,432,384 total=24,356,751 trainable=1,791,375; param groups: frozen=22,565,376\n")
  first, other = tmp_path / "adapters__q__seed0", tmp_path / "adapters__q__seed1"
  for d in (first, other):
    d.mkdir()
    (d / "run_spec.json").write_text(json.dumps({"param_shapes": {"['w']": [24356751]}}))
  (first / "train.log").write_text("===== mtl-compare: ...\n" + start)
  (other / "train.log").write_text(seed_groups.pointer_line([0, 1], first / "train.log"))
  want = {"embedder": 11918592, "heads": 5775, "trunk": 12432384, "total": 24356751, "trainable": 1791375}
  assert collect.read_params(first) == collect.read_params(other) == want
  (first / "train.log").unlink()  # the group's log gone: run_spec.json's total, as before
  assert collect.read_params(other) == {"total": 24356751}
