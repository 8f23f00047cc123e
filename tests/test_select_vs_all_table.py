"""benchmarks/select_vs_all.py: arms from transfer.pairs, means over targets and paired tests vs numpy / scipy."""

from __future__ import annotations

import json
import sys
import pathlib

import numpy as np
import pytest
from scipy import stats as sps

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import select_vs_all  # noqa: E402

TARGETS = ["t0", "t1", "t2", "t3"]
PAIRS = {t: [f"sel_{t}", "all", f"rnd_{t}"] for t in TARGETS}


def _cells(rng):
  base = {"selected": 0.70, "all": 0.66, "random": 0.60, "none": 0.55}
  cells, truth = [], {}
  for arm, mu in base.items():
    for i, t in enumerate(TARGETS):
      source = "none" if arm == "none" else PAIRS[t][("selected", "all", "random").index(arm)]
      for seed in range(3):
        score = mu + 0.02 * i + rng.normal(0, 0.01)
        truth.setdefault(arm, {}).setdefault(t, []).append(score)
        cells.append({"source": source, "target": t, "seed": seed, "score": score, "regime": "n100"})
  return cells, truth


def test_arm_means_and_paired_tests_match_numpy_and_scipy(tmp_path):
  cells, truth = _cells(np.random.default_rng(0))
  exp = {"targets": TARGETS, "pairs": PAIRS, "source_bindings": {"TRAIN_STEPS": 300}, "bindings": {}}
  (tmp_path / "transfer_matrix.json").write_text(json.dumps({"experiment": exp, "cells": cells, "unfinished": []}))
  assert select_vs_all.main([f"--exp_dir={tmp_path}", f"--out={tmp_path / 'out'}"]) == 0
  got = json.loads((tmp_path / "out" / "select_vs_all.json").read_text())
  means = {arm: [np.mean(truth[arm][t]) for t in TARGETS] for arm in truth}
  for row in got["rows"]:
    assert row["mean"] == pytest.approx(np.mean(means[row["arm"]]))
    assert row["targets"] == 4 and row["seeds_per_target"] == [3]
  sel_all = next(c for c in got["comparisons"] if (c["a"], c["b"]) == ("selected", "all"))
  d = np.subtract(means["selected"], means["all"])
  assert sel_all["diff"] == pytest.approx(d.mean())
  assert sel_all["p"] == pytest.approx(sps.ttest_rel(means["selected"], means["all"]).pvalue)
  assert len(got["comparisons"]) == 5 and all(c["m"] == 5 for c in got["comparisons"])
  assert "| selected vs none |" in (tmp_path / "out" / "select_vs_all.md").read_text()


def test_a_target_without_three_arms_is_refused():
  with pytest.raises(ValueError, match="target 't0' has 2 stage-1 arms"):
    select_vs_all.arm_of_source({"t0": ["a", "b"]})


def test_a_missing_matrix_is_one_line(tmp_path):
  with pytest.raises(SystemExit, match="transfer_matrix.json not found"):
    select_vs_all.main([f"--exp_dir={tmp_path}", f"--out={tmp_path / 'out'}"])
