"""mtl-compare report and plots on fake cells written by the test (no training)."""

import csv
import json
import math
import pathlib
import struct

import numpy as np
import pytest
from scipy import stats as sps
from test_compare_fakes import score, write_cell

from mtl_jax.compare import collect, grid, report, runner


def png_size(path) -> tuple:
  """(width, height) of a PNG, asserting a valid signature and IHDR chunk."""
  data = pathlib.Path(path).read_bytes()
  assert len(data) > 100, path
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
  return struct.unpack(">II", data[16:24])


def _experiment(tmp_path, mixtures, strategies, seeds=(0, 1)):
  exp = grid.Experiment(gin_files=["gin/base.gin"], strategies=strategies, mixtures=mixtures, seeds=seeds,
                        bindings={"TRAIN_STEPS": 10}, exp_dir=str(tmp_path), sharing_gin="gin/sharing/hard.gin",
                        tasks={"mixA": ["taskA", "taskB"]})
  cells = exp.cells()
  for c in cells:
    write_cell(runner.cell_dir(tmp_path, c), c.strategy, c.mixture, c.seed, 10)
  return exp, cells


def test_report_files_tables_and_plots(tmp_path):
  exp, cells = _experiment(tmp_path, ["mixA"], ["hard", "sluice", "cross_stitch", "mmoe"])
  collected = collect.collect(cells, tmp_path)
  jitter = {0: 0.03, 1: -0.04}  # the fakes' differences are constant over seeds; give one task real noise
  for c in collected:
    if c["strategy"] == "sluice":
      c["tasks"]["taskB"]["value"] += jitter[c["seed"]]
  out = report.write_all(tmp_path, exp.to_json(), collected, exp.strategies)
  names = sorted(pathlib.Path(f).name for f in out["files"])
  assert names == sorted(["results.csv", "results.json", "report.md", "curves__mixA.png", "bars__mixA.png",
                          "mixing__sluice__mixA__sluice_alpha.png", "mixing__sluice__mixA__sluice_beta.png",
                          "mixing__cross_stitch__mixA__cross_stitch_alpha.png", "mixing__mmoe__mixA__mmoe_gates.png"])
  for f in out["files"]:
    if f.endswith(".png"):
      width, height = png_size(f)
      assert width >= 300 and height >= 250, (f, width, height)
  # the sluice alpha figure has one panel per layer: wider than tall
  w, h = png_size(tmp_path / "plots" / "mixing__sluice__mixA__sluice_alpha.png")
  assert w > h

  rows = list(csv.DictReader(open(tmp_path / "results.csv")))
  hard_a = next(r for r in rows if r["strategy"] == "hard" and r["task"] == "taskA")
  expected = [score("hard", "taskA", s) for s in (0, 1)]
  assert float(hard_a["mean"]) == round(sum(expected) / 2, 4)
  assert float(hard_a["std"]) == round(abs(expected[0] - expected[1]) / math.sqrt(2), 4)
  assert float(hard_a["single_mean"]) == round(sum(score("single", "taskA", s) for s in (0, 1)) / 2, 4)
  assert {r["task"] for r in rows} == {"taskA", "taskB", "average", "delta_m"}
  sluice_b = [score("sluice", "taskB", s) + jitter[s] for s in (0, 1)]
  single_b = [score("single", "taskB", s) for s in (0, 1)]
  ref = sps.ttest_rel(sluice_b, single_b)
  row = next(r for r in rows if r["strategy"] == "sluice" and r["task"] == "taskB")
  assert float(row["p_vs_single"]) == round(ref.pvalue, 6) and float(row["p_perm_vs_single"]) == 0.5  # both diffs > 0: 2/2^2
  assert row["significant_vs_single"] == "0" and float(row["detectable_diff"]) > abs(float(row["diff_vs_single"]))
  lo, hi = sps.t.interval(0.95, 1, loc=sum(sluice_b) / 2, scale=sps.sem(sluice_b))
  assert (float(row["ci_low"]), float(row["ci_high"])) == (round(lo, 4), round(hi, 4))
  assert {r["strategy"] for r in rows} == {"single", "hard", "sluice", "cross_stitch", "mmoe"}

  data = json.loads((tmp_path / "results.json").read_text())
  assert len(data["cells"]) == len(cells) and data["experiment"]["strategies"] == list(exp.strategies)
  sluice = next(g for g in data["groups"] if g["strategy"] == "sluice")
  single_mean = {t: sum(score("single", t, s) for s in (0, 1)) / 2 for t in ("taskA", "taskB")}
  sluice_score = lambda t, s: score("sluice", t, s) + (jitter[s] if t == "taskB" else 0.0)
  per_seed = [sum((sluice_score(t, s) - single_mean[t]) / single_mean[t] for t in single_mean) / 2 for s in (0, 1)]
  assert sluice["delta_m"]["values"] == pytest.approx(per_seed)
  boot = sps.bootstrap((np.asarray(per_seed),), np.mean, n_resamples=2000, method="percentile",
                       rng=np.random.default_rng(0)).confidence_interval  # stats.SEED
  assert sluice["delta_m"]["boot_ci"] == pytest.approx([boot.low, boot.high])
  assert data["groups"][-1]["strategy"] == "single" and data["groups"][-1]["average"]["std"] is not None

  md = (tmp_path / "report.md").read_text()
  assert "| strategy | average headline | Δm (%)" in md and "| task (metric) | single-task | hard | sluice |" in md
  assert "How the numbers were computed:" in md and "0.5 with n = 2" in md  # sign-flip floor 2/2^2
  assert "| strategy | task | diff vs single [95% CI] | p (t) | p (sign flip) | p adj (Holm) |" in md
  sluice_row = next(line for line in md.splitlines() if line.startswith("| sluice | taskB |"))
  assert "| n.s. |" in sluice_row and f"| {ref.pvalue:.3g} |" in sluice_row
  assert "Power: " in md and "≈" not in md
  assert f"[{100 * boot.low:+.2f}, {100 * boot.high:+.2f}] |" in md  # delta-m's bootstrap CI in the summary
  assert "![curves__mixA.png](plots/curves__mixA.png)" in md
  assert "![mixing__mmoe__mixA__mmoe_gates.png](plots/mixing__mmoe__mixA__mmoe_gates.png)" in md


def test_missing_mixing_weights_are_a_note_not_an_error(tmp_path):
  exp, cells = _experiment(tmp_path, ["mixA"], ["hard", "sluice"], seeds=(0,))
  for c in cells:
    (runner.cell_dir(tmp_path, c) / collect.MIXING_WEIGHTS_FILE).unlink(missing_ok=True)
  out = report.write_all(tmp_path, exp.to_json(), collect.collect(cells, tmp_path), exp.strategies)
  assert not any("mixing__" in f for f in out["files"])
  md = (tmp_path / "report.md").read_text()
  assert "sluice on mixA: no mixing_weights.json in its run directories; mixing-weight plots skipped." in md
  assert "± n/a" in md  # one seed: no std


def test_relatedness_sweep_plot_and_table(tmp_path):
  mixtures = ["synthetic_r0_t2", "synthetic_r50_t2", "synthetic_r100_t2"]
  exp, cells = _experiment(tmp_path, mixtures, ["hard", "soft"])
  out = report.write_all(tmp_path, exp.to_json(), collect.collect(cells, tmp_path), exp.strategies)
  sweep = tmp_path / "plots" / "delta_m_vs_relatedness__t2.png"
  assert str(sweep) in out["files"] and png_size(sweep)[0] >= 400
  md = (tmp_path / "report.md").read_text()
  assert "### Δm (%) vs relatedness, T=2" in md and "| strategy | r=0 | r=0.5 | r=1 |" in md
  # the fake scores rise with r for multi-task strategies only: hard's delta-m grows with r
  groups = out["result"]["groups"]
  dm = {g["mixture"]: g["delta_m"]["mean"] for g in groups if g["strategy"] == "hard"}
  assert dm["synthetic_r0_t2"] < dm["synthetic_r50_t2"] < dm["synthetic_r100_t2"]
  assert "mixing" not in " ".join(out["notes"])  # hard/soft have no mixing weights to miss
