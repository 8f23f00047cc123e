"""mtl-compare aggregation: mean/std, delta-m and the noise rule against hand-computed values."""

import math

import pytest

from mtl_jax.compare import aggregate as agg


def test_mean_std_is_sample_std():
  mean, std, n = agg.mean_std([1.0, 2.0, 3.0, 4.0])
  assert (mean, n) == (2.5, 4)
  assert std == pytest.approx(math.sqrt(5 / 3))  # sum of squares 5, ddof 1
  mean, std, n = agg.mean_std([0.7])
  assert mean == 0.7 and math.isnan(std) and n == 1
  mean, std, n = agg.mean_std([])
  assert math.isnan(mean) and n == 0


def test_delta_m_by_hand():
  mtl, single = {"a": 0.9, "b": 0.5}, {"a": 0.8, "b": 0.625}
  # a: (0.9-0.8)/0.8 = +0.125 ; b: (0.5-0.625)/0.625 = -0.2 ; mean = -0.0375
  assert agg.delta_m(mtl, single) == pytest.approx(-0.0375)
  # b lower-is-better: -(0.5-0.625)/0.625 = +0.2 ; mean = (0.125 + 0.2) / 2
  assert agg.delta_m(mtl, single, {"b": True}) == pytest.approx(0.1625)
  assert math.isnan(agg.delta_m(mtl, {"a": 0.8}))  # no baseline for b
  assert agg.relative_change(0.1, -0.2) == pytest.approx(1.5)  # |baseline| keeps "higher is better"
  assert math.isnan(agg.relative_change(0.3, 0.0))


def test_within_noise():
  assert agg.within_noise(0.01, 0.02, float("nan")) is True
  assert agg.within_noise(-0.05, 0.02, 0.03) is False
  assert agg.within_noise(0.01, float("nan"), float("nan")) is None


def _cell(kind, strategy, mixture, seed, tasks, status="done", axes=None, params=100):
  return {"cell_id": f"{strategy}-{mixture}-{seed}", "kind": kind, "strategy": strategy, "mixture": mixture,
          "seed": seed, "axes": axes or {}, "status": status, "step": 10,
          "average": sum(tasks.values()) / len(tasks) if tasks else None,
          "tasks": {t: {"metric": "f1_macro", "value": v, "lower_is_better": False} for t, v in tasks.items()},
          "history": [], "params": {"total": params}, "steps_per_second": 10.0 + seed, "wall_s": 20.0,
          "attempts": 1, "mixing_weights": None, "model_dir": "/x"}


def test_aggregate_groups_and_delta_m_by_hand():
  cells = [
      _cell("mtl", "hard", "m", 0, {"a": 0.9, "b": 0.5}),
      _cell("mtl", "hard", "m", 1, {"a": 0.7, "b": 0.7}),
      _cell("mtl", "hard", "m", 2, {"a": 0.1, "b": 0.1}, status="incomplete"),  # left out
      _cell("single", "single", "a", 0, {"a": 0.8}, params=60),
      _cell("single", "single", "a", 1, {"a": 0.8}, params=60),
      _cell("single", "single", "b", 0, {"b": 0.6}, params=60),
      _cell("single", "single", "b", 1, {"b": 0.65}, params=60),
  ]
  out = agg.aggregate(cells)
  hard = next(g for g in out["groups"] if g["strategy"] == "hard")
  assert hard["seeds"] == [0, 1] and hard["missing"] == ["hard-m-2"]
  assert hard["tasks"]["a"]["mean"] == pytest.approx(0.8)
  assert hard["tasks"]["a"]["std"] == pytest.approx(math.sqrt(0.02))  # (0.9, 0.7)
  assert hard["tasks"]["b"]["single_mean"] == pytest.approx(0.625)
  assert hard["tasks"]["b"]["single_std"] == pytest.approx(math.sqrt(0.00125))
  # seed 0: (+0.125 - 0.2)/2 = -0.0375 ; seed 1: ((0.7-0.8)/0.8 + (0.7-0.625)/0.625)/2 = (-0.125+0.12)/2
  assert hard["delta_m"]["values"] == pytest.approx([-0.0375, -0.0025])
  assert hard["delta_m"]["mean"] == pytest.approx(-0.02)
  assert hard["delta_m"]["std"] == pytest.approx(math.sqrt(2 * 0.0175 ** 2))
  assert hard["average"]["mean"] == pytest.approx(0.7)
  # a: diff 0 < std -> within noise ; b: diff 0.075, stds 0.1414 / 0.0354 -> within noise
  assert hard["tasks"]["a"]["within_noise"] is True and hard["tasks"]["b"]["within_noise"] is True
  assert hard["steps_per_second"] == pytest.approx(10.5) and hard["params_total"] == 100
  single = next(g for g in out["groups"] if g["strategy"] == "single")
  assert single["average"]["values"] == pytest.approx([0.7, 0.725])  # per seed mean over tasks
  assert single["params_total"] == 120 and single["delta_m"]["mean"] == 0.0
  # single-task (delta-m 0) is best; hard's gap 0.02 is below its delta-m std 0.0247 -> within noise
  assert single["is_best"] and hard["within_noise_of_best"] is True


def test_missing_baseline_gives_unknown_delta_m_and_ranks_by_average():
  cells = [_cell("mtl", "hard", "m", 0, {"a": 0.9, "b": 0.5}), _cell("mtl", "sluice", "m", 0, {"a": 0.9, "b": 0.7}),
           _cell("single", "single", "a", 0, {"a": 0.8})]
  out = agg.aggregate(cells)
  hard = next(g for g in out["groups"] if g["strategy"] == "hard")
  assert math.isnan(hard["delta_m"]["mean"]) and hard["baselines_missing"] == ["b"]
  assert [g["strategy"] for g in out["groups"]] == ["hard", "sluice"]  # no single group without every baseline
  assert hard["ranked_by"] == "average"
  assert next(g for g in out["groups"] if g["strategy"] == "sluice")["is_best"]


def test_mtl_only_axes_share_baselines():
  cells = [_cell("mtl", "hard", "m", 0, {"a": 0.9}, axes={"rate": "x"}),
           _cell("mtl", "hard", "m", 0, {"a": 0.6}, axes={"rate": "y"}),
           _cell("single", "single", "a", 0, {"a": 0.75})]
  out = agg.aggregate(cells, mtl_only_axes=["rate"])
  by_rate = {g["axes"]["rate"]: g for g in out["groups"] if g["kind"] == "mtl"}
  assert by_rate["x"]["delta_m"]["mean"] == pytest.approx(0.2)
  assert by_rate["y"]["delta_m"]["mean"] == pytest.approx(-0.2)
