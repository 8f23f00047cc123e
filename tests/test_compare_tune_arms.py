"""Per-arm search spaces and the tuned static-weight simplex (compare/tune.py, #28 item 3): the simplex
grid is exactly numpy's enumeration, an arm's own keys expand only that arm's cells, and the pick among
an arm's settings follows validation even where test disagrees."""

import itertools
import math

import numpy as np
import pytest

from mtl_jax.compare import grid, tune

W = "soft_sharing.weight"


def _experiment(tmp_path, **kw):
  fields = dict(gin_files=["gin/base.gin"], strategies=["hard", "soft"], mixtures=["mixA"], seeds=(0, 1),
                bindings={"TRAIN_STEPS": 10}, exp_dir=str(tmp_path), tasks={"mixA": ["taskA", "taskB"]})
  fields.update(kw)
  return grid.Experiment(**fields)


def _numpy_simplex(num_tasks: int, steps: int) -> np.ndarray:
  ks = np.indices((steps + 1,) * num_tasks).reshape(num_tasks, -1).T
  return ks[ks.sum(1) == steps] / steps


@pytest.mark.parametrize("num_tasks, steps", [(1, 4), (2, 4), (3, 4), (3, 5), (4, 3), (5, 2)])
def test_simplex_grid_is_numpys_enumeration(num_tasks, steps):
  got = np.array(tune.simplex_grid(num_tasks, steps))
  want = _numpy_simplex(num_tasks, steps)
  assert got.shape == want.shape == (math.comb(steps + num_tasks - 1, num_tasks - 1), num_tasks)
  assert sorted(map(tuple, got)) == sorted(map(tuple, want))  # the same points, each once
  np.testing.assert_allclose(got.sum(1), 1.0)


def test_static_weight_space_grid_then_fixed_sample():
  assert tune.static_weight_space(2) == [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]]
  assert len(tune.static_weight_space(3)) == 15
  five = tune.static_weight_space(5)
  assert five == tune.static_weight_space(5) and len(five) == tune.SIMPLEX_SAMPLE
  assert five[0] == [0.2] * 5 and all(abs(sum(p) - 1) < 0.01 and min(p) >= 0 for p in five)


def test_an_arms_space_expands_only_its_cells(tmp_path):
  exp = _experiment(tmp_path)
  cells = tune.expand_arms(exp, exp.cells(), {"soft": {W: [1e-3, 1e-2]}})
  soft = [c for c in cells if c.strategy == "soft"]
  assert len(soft) == 4 and sorted(c.axes_dict[W] for c in soft) == ["0.001", "0.001", "0.01", "0.01"]
  assert all((W, float(c.axes_dict[W])) in c.bindings for c in soft)
  assert f"--gin.{W}=0.01" in next(c for c in soft if c.axes_dict[W] == "0.01").argv(["bin"], "/m")
  others = [c for c in cells if c.strategy != "soft"]
  assert len(others) == 6 and all(W not in c.axes_dict for c in others)  # hard and the baselines: one setting
  assert len({c.cell_id for c in cells}) == len(cells) == 10


def test_static_weighting_arm_searches_the_simplex(tmp_path):
  exp = _experiment(tmp_path, strategies=["hard"], seeds=(0,), mtl_only_axes=("weighting",),
                    axes={"weighting": ["equal", "static"]})
  cells = tune.expand_arms(exp, exp.cells(), {"weighting=static": {tune.STATIC_WEIGHTS: "simplex"}})
  static = [c for c in cells if c.axes_dict.get("weighting") == "static"]
  weights = [dict(c.bindings)[tune.STATIC_WEIGHTS] for c in static]
  assert weights == tune.static_weight_space(2) and len(static) == 5
  assert sum(c.axes_dict.get("weighting") == "equal" for c in cells) == 1
  assert sum(c.kind == "single" for c in cells) == 2


@pytest.mark.parametrize("spaces, message", [
    ({"sofft": {W: [1e-3]}}, "no arm 'sofft' in this experiment; did you mean 'soft'?"),
    ({"soft": {}}, "is an empty search space"),
    ({"soft": {W: "simplex"}}, "'simplex' only applies to weighting.static.weights"),
    ({"soft": {"soft_sharing.wieght": [1e-3]}}, "soft_sharing has no parameter 'wieght'; did you mean soft_sharing.weight?")])
def test_bad_arm_spaces_are_one_line(tmp_path, spaces, message):
  exp = _experiment(tmp_path)
  with pytest.raises(ValueError) as e:
    tune.expand_arms(exp, exp.cells(), spaces)
  assert message in str(e.value) and "\n" not in str(e.value)


def _cell(strategy, setting, seed, validation, test):
  axes = {W: setting} if setting is not None else {}
  score = lambda v: {"t": {"metric": "accuracy", "value": v, "lower_is_better": False}}
  return {"kind": "mtl", "strategy": strategy, "mixture": "m", "axes": axes, "status": "done", "average": validation,
          "tasks": score(validation), "test": score(test), "cell_id": f"{strategy}{setting}{seed}"}


def test_an_arms_pick_follows_validation_where_test_disagrees():
  cells = [_cell("soft", "0.001", s, 0.80 + 0.01 * s, 0.60) for s in (0, 1)]   # validation best, test worst
  cells += [_cell("soft", "0.01", s, 0.70 + 0.01 * s, 0.90) for s in (0, 1)]   # test best
  cells += [_cell("hard", None, s, 0.75, 0.75) for s in (0, 1)]
  kept, picks = tune.select(cells, tune.arm_keys({"soft": {W: [1e-3, 1e-2]}}))
  soft = next(p for p in picks if p["strategy"] == "soft")
  assert soft["pick"] == {W: "0.001"}
  assert {s["setting"][W]: s["validation_mean"] for s in soft["space"]} == pytest.approx({"0.001": 0.805, "0.01": 0.705})
  assert [c["tasks"]["t"]["value"] for c in kept if c["strategy"] == "soft"] == [0.60, 0.60]  # its TEST numbers
  assert sum(c["strategy"] == "hard" for c in kept) == 2


def test_the_grid_expands_gin_declared_arm_spaces_and_the_report_picks_them(tmp_path):
  import json
  from test_compare_fakes import write_cell
  from mtl_jax.compare import collect, report, runner
  exp = grid.load([], ["experiment.gin_files = ['gin/base.gin']", "experiment.strategies = ['hard', 'soft']",
                       "experiment.mixtures = ['mixA']", "experiment.baselines = False",
                       "experiment.tasks = {'mixA': ['taskA', 'taskB']}", "experiment.bindings = {'TRAIN_STEPS': 10}",
                       f"experiment.tune_arms = {{'soft': {{'{W}': [1e-3, 1e-2]}}}}"], exp_dir=str(tmp_path))
  cells = exp.cells()  # the gin-declared arm spaces survive load() (which clears gin)
  assert sorted(c.axes_dict.get(W, "-") for c in cells) == ["-", "0.001", "0.01"]
  for c in cells:
    write_cell(runner.cell_dir(tmp_path, c), c.strategy, c.mixture, c.seed, 10)
  collected = collect.collect(cells, tmp_path)
  for c in collected:  # validation favours weight 0.01, test the other setting
    good = c["axes"].get(W) == "0.01"
    c["test"] = {t: {**v, "value": v["value"] - (0.2 if good else 0.0)} for t, v in c["tasks"].items()}
    for t in c["tasks"]:
      c["tasks"][t]["value"] += 0.1 if good else 0.0
    c["average"] = sum(t["value"] for t in c["tasks"].values()) / len(c["tasks"])
  report.write_all(tmp_path, exp.to_json(), collected, exp.strategies)
  data = json.loads((tmp_path / "results.json").read_text())
  soft = next(p for p in data["tuning"] if p["strategy"] == "soft")
  assert soft["pick"] == {W: "0.01"} and len(data["tuning"]) == 2
  assert "list it in their row" in (tmp_path / "report.md").read_text()
