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


def _write(path, cells, targets=TARGETS):
  exp = {"targets": targets, "pairs": {t: PAIRS[t] for t in targets}, "source_bindings": {"TRAIN_STEPS": 300},
         "bindings": {}}
  path.mkdir(parents=True, exist_ok=True)
  (path / "transfer_matrix.json").write_text(json.dumps({"experiment": exp, "cells": cells, "unfinished": []}))


def test_versus_adds_the_other_experiments_selected_arm_paired_over_targets(tmp_path):
  mine, truth = _cells(np.random.default_rng(1))
  other, other_truth = _cells(np.random.default_rng(2))
  _write(tmp_path / "mine", mine)
  _write(tmp_path / "oracle", other)
  assert select_vs_all.main([f"--exp_dir={tmp_path / 'mine'}", f"--out={tmp_path / 'out'}",
                             f"--versus=oracle={tmp_path / 'oracle'}"]) == 0
  got = json.loads((tmp_path / "out" / "select_vs_all.json").read_text())
  a = [np.mean(truth["selected"][t]) for t in TARGETS]
  b = [np.mean(other_truth["selected"][t]) for t in TARGETS]
  row = next(r for r in got["rows"] if r["arm"] == "selected (oracle)")
  assert row["mean"] == pytest.approx(np.mean(b))
  c = next(c for c in got["comparisons"] if c["b"] == "selected (oracle)")
  assert c["a"] == "selected" and c["diff"] == pytest.approx(np.mean(np.subtract(a, b)))
  assert c["p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
  assert len(got["comparisons"]) == 6 and all(c["m"] == 6 for c in got["comparisons"])


def test_versus_on_other_targets_or_without_a_label_is_one_line(tmp_path):
  cells, _ = _cells(np.random.default_rng(0))
  _write(tmp_path / "mine", cells)
  _write(tmp_path / "other", [c for c in cells if c["target"] != "t3"], targets=TARGETS[:3])
  with pytest.raises(SystemExit, match=r"has no target\(s\) \['t3'\]"):
    select_vs_all.main([f"--exp_dir={tmp_path / 'mine'}", f"--out={tmp_path / 'out'}",
                        f"--versus=oracle={tmp_path / 'other'}"])
  with pytest.raises(SystemExit, match="use LABEL=EXP_DIR"):
    select_vs_all.main([f"--exp_dir={tmp_path / 'mine'}", f"--out={tmp_path / 'out'}", f"--versus={tmp_path}"])
  assert not (tmp_path / "out").exists()
