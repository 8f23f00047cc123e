"""mtl-compare aggregation: mean/std, delta-m and the paired tests against hand-computed values."""

import math

import pytest
from scipy import stats as sps

from mtl_jax.compare import aggregate as agg
from mtl_jax.compare import stats


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
  # a: per-seed diffs (+0.1, -0.1): t = 0, p = 1. b: diffs (-0.1, +0.05): mean -0.025, se 0.075,
  # t = -1/3 on 1 df (a Cauchy): two-sided p = 1 - (2/pi) atan(1/3)
  va, vb = hard["tasks"]["a"]["vs_single"], hard["tasks"]["b"]["vs_single"]
  assert va["p"] == pytest.approx(1.0) and va["t"] == pytest.approx(0.0, abs=1e-12)
  assert vb["t"] == pytest.approx(-1 / 3) and vb["p"] == pytest.approx(1 - 2 / math.pi * math.atan(1 / 3))
  assert vb["p_perm"] == pytest.approx(1.0)  # 2 seeds: 4 sign patterns, all reach |mean| 0.025
  assert hard["tasks"]["a"]["ci"] == pytest.approx(sps.t.interval(0.95, 1, loc=0.8, scale=0.1))
  assert hard["steps_per_second"] == pytest.approx(10.5) and hard["params_total"] == 100
  single = next(g for g in out["groups"] if g["strategy"] == "single")
  assert single["average"]["values"] == pytest.approx([0.7, 0.725])  # per seed mean over tasks
  assert single["params_total"] == 120 and single["delta_m"]["mean"] == 0.0
  # single-task (delta-m 0) is best; hard's per-seed delta-m (-0.0375, -0.0025) vs 0: t = -0.02 / 0.0175
  vbest = hard["vs_best"]
  assert single["is_best"] and single["vs_best"] is None
  assert vbest["p"] == pytest.approx(1 - 2 / math.pi * math.atan(0.02 / 0.0175))
  # Holm over the experiment's 3 comparisons: 3 * 0.458 > 1 -> every adjusted p is 1, nothing marked
  assert vbest["m"] == 3 and [c["p_adj"] for c in (va, vb, vbest)] == pytest.approx([1.0, 1.0, 1.0])
  assert [c["direction"] for c in (va, vb, vbest)] == [0, 0, 0]
  assert hard["delta_m"]["ci"] == pytest.approx(sps.t.interval(0.95, 1, loc=-0.02, scale=0.0175))


def test_significance_is_holm_adjusted_over_the_experiment_and_equal_is_never_worse():
  seeds = range(4)
  hard = {"a": [0.90, 0.92, 0.91, 0.93], "b": [1.0] * 4, "c": [0.55, 0.71, 0.62, 0.60]}
  single = {"a": [0.80, 0.81, 0.82, 0.80], "b": [1.0] * 4, "c": [0.60, 0.62, 0.66, 0.58]}
  cells = [_cell("mtl", "hard", "m", s, {t: v[s] for t, v in hard.items()}) for s in seeds]
  cells += [_cell("single", "single", t, s, {t: v[s]}) for t, v in single.items() for s in seeds]
  out = agg.aggregate(cells)
  g = next(g for g in out["groups"] if g["strategy"] == "hard")
  comps = agg.all_comparisons(out["groups"])
  assert len(comps) == 4  # 3 tasks vs single + hard vs the best (single-task or hard)
  raw = [sps.ttest_rel(hard["a"], single["a"]).pvalue, 1.0, sps.ttest_rel(hard["c"], single["c"]).pvalue]
  for t, p in zip("abc", raw):
    assert g["tasks"][t]["vs_single"]["p"] == pytest.approx(p)
  assert [c["p_adj"] for c in comps] == pytest.approx(stats.holm([c["p"] for c in comps]))
  assert g["tasks"]["a"]["vs_single"]["direction"] == 1  # p = 0.0004, x4 still < 0.05
  assert g["tasks"]["b"]["vs_single"]["direction"] == 0  # 1.000 ± 0 both sides: never worse (#26 item 4)
  assert g["tasks"]["c"]["vs_single"]["direction"] == 0
  assert g["tasks"]["c"]["vs_single"]["detectable"] > abs(g["tasks"]["c"]["diff"])
  assert g["tasks"]["c"]["vs_single"]["seeds_needed"] > 4


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
