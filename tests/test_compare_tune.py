"""Tuned arms (#28 item 3): the grid runs every setting, the pick follows validation, never test."""

import copy
import json
import statistics

import pytest
from test_compare_fakes import write_cell

from mtl_jax.compare import collect, grid, report, runner, tune

LR = "optim.make_optimizer.learning_rate"


def _experiment(tmp_path, **kw):
  fields = dict(gin_files=["gin/base.gin"], strategies=["hard", "soft"], mixtures=["mixA"], seeds=(0, 1),
                bindings={"TRAIN_STEPS": 10}, exp_dir=str(tmp_path), tasks={"mixA": ["taskA", "taskB"]},
                tune={LR: [1e-3, 3e-3]})
  fields.update(kw)
  return grid.Experiment(**fields)


def test_every_setting_runs_for_every_arm_including_baselines(tmp_path):
  cells = _experiment(tmp_path).cells()
  # (2 strategies + 2 single-task baselines) x 2 learning rates x 2 seeds
  assert len(cells) == 16
  for kind, label in (("mtl", "hard"), ("single", "taskA")):
    lrs = sorted(c.axes_dict[LR] for c in cells if c.kind == kind and label in (c.strategy, c.mixture))
    assert lrs == ["0.001", "0.001", "0.003", "0.003"]
  argv = next(c for c in cells if c.strategy == "soft" and c.axes_dict[LR] == "0.003").argv(["bin"], "/m")
  assert f"--gin.{LR}=0.003" in argv


@pytest.mark.parametrize("tune_spec, message", [
    ({LR: []}, "is an empty search space"),
    ({"optim.make_optimizer.learning_rat": [1e-3]}, "did you mean optim.make_optimizer.learning_rate?"),
    ({"optim.make_optimiser.learning_rate": [1e-3]}, "no function 'make_optimiser' in a module named optim.py"),
    ({"TRAIN_STEP": [10, 20]}, "did you mean --gin.TRAIN_STEPS?"),
    ({LR: [1e-3, 1e-3]}, "duplicate values"),
    ({LR: ["gin/models/tiny.gin"]}, "put gin files in experiment.axes"),
])
def test_bad_tune_spec_is_one_line_before_any_cell(tmp_path, tune_spec, message):
  with pytest.raises(ValueError, match=message) as err:
    _experiment(tmp_path, tune=tune_spec).cells()
  assert "\n" not in str(err.value)
  assert not any(tmp_path.iterdir())  # nothing written


def _collected_with_disagreeing_splits(tmp_path):
  """Fake cells where lr=0.001 is better on validation and lr=0.003 better on test, by 0.1."""
  exp = _experiment(tmp_path)
  cells = exp.cells()
  for c in cells:
    write_cell(runner.cell_dir(tmp_path, c), c.strategy, c.mixture, c.seed, 10)
  collected = collect.collect(cells, tmp_path)
  for c in collected:
    sign = 1 if c["axes"][LR] == "0.001" else -1
    c["test"] = copy.deepcopy(c["tasks"])
    for t in c["tasks"]:
      c["tasks"][t]["value"] += 0.1 * sign   # validation: 0.001 wins
      c["test"][t]["value"] -= 0.1 * sign    # test: 0.003 wins
    c["average"] = statistics.fmean(t["value"] for t in c["tasks"].values())
  return exp, collected


def test_pick_is_made_on_validation_never_on_test(tmp_path):
  exp, collected = _collected_with_disagreeing_splits(tmp_path)
  kept, picks = tune.select(collected, [LR])
  assert len(picks) == 4 and all(p["pick"] == {LR: "0.001"} for p in picks)  # hard, soft, taskA, taskB
  hard = next(p for p in picks if p["strategy"] == "hard")
  means = {s["setting"][LR]: s["validation_mean"] for s in hard["space"]}
  assert means["0.001"] - means["0.003"] == pytest.approx(0.2) and all(s["n"] == 2 for s in hard["space"])
  assert len(kept) == 8 and all(c["tuned"] == {LR: "0.001"} and LR not in c["axes"] for c in kept)
  # the comparison sees the picked setting's TEST numbers
  by_id = {c["cell_id"]: c for c in collected}
  for c in kept:
    assert c["split"] == "test" and c["tasks"] == by_id[c["cell_id"]]["test"]

  report.write_all(tmp_path, exp.to_json(), collected, exp.strategies)
  data = json.loads((tmp_path / "results.json").read_text())
  hard_group = next(g for g in data["groups"] if g["strategy"] == "hard")
  want = statistics.fmean(by_id[c["cell_id"]]["test"]["taskA"]["value"] for c in kept if c["strategy"] == "hard")
  assert hard_group["tasks"]["taskA"]["mean"] == pytest.approx(want)
  assert hard_group["axes"] == {} and len(data["cells"]) == 16 and len(data["tuning"]) == 4
  md = (tmp_path / "report.md").read_text()
  assert "## Tuned arms" in md and f"{LR} in [0.001, 0.003]" in md
  row = next(line for line in md.splitlines() if line.startswith("| hard | mixA |"))
  assert row.endswith("| learning_rate=0.001 |") and "learning_rate=0.003: " in row
  assert "- scores compared: test split" in md


def test_without_tune_every_cell_is_kept():
  cells = [{"kind": "mtl", "strategy": "hard", "mixture": "m", "axes": {}, "status": "done", "average": 0.5,
            "tasks": {"a": {"metric": "accuracy", "value": 0.5, "lower_is_better": False}}, "cell_id": "x"}]
  kept, picks = tune.select(cells, [])
  assert picks == [] and kept[0]["split"] == "validation" and kept[0]["tasks"] == cells[0]["tasks"]
