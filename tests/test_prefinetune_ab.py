"""benchmarks/prefinetune_ab.py: the family-vs-all comparison and Holm over all rows, against scipy / numpy."""

import pathlib
import sys

import numpy as np
import scipy.stats

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import prefinetune_ab  # noqa: E402


def _cells():
  rng = np.random.default_rng(0)
  out = []
  for source, shift in (("none", 0.0), ("pft_all_but_targets", 0.02), ("pft_family_t1", 0.05)):
    for seed in range(4):
      out.append({"target": "t1", "regime": "full", "source": source, "seed": seed,
                  "score": 0.6 + shift + 0.01 * seed + float(rng.normal(0, 0.005))})
  return out


def test_rows_are_paired_t_tests_with_holm_over_all():
  cells = _cells()
  rows = prefinetune_ab.comparisons(cells)
  assert [r["what"] for r in rows] == ["(a) all vs none", "(b) family vs none", "(b) family vs (a) all"]
  score = lambda s: [c["score"] for c in cells if c["source"] == s]  # seeds in order
  pairs = [("pft_all_but_targets", "none"), ("pft_family_t1", "none"), ("pft_family_t1", "pft_all_but_targets")]
  ps = []
  for row, (a, b) in zip(rows, pairs):
    want = scipy.stats.ttest_rel(score(a), score(b))
    np.testing.assert_allclose(row["test"]["p"], want.pvalue, rtol=1e-10)
    np.testing.assert_allclose(row["test"]["diff"], np.mean(np.subtract(score(a), score(b))), rtol=1e-12)
    ps.append(want.pvalue)
  order = np.argsort(ps)  # Holm by hand: sorted p times (m - rank), running max, capped at 1
  adjusted, running = np.empty(3), 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, ps[i] * (3 - rank)))
    adjusted[i] = running
  np.testing.assert_allclose([r["test"]["p_adj"] for r in rows], adjusted, rtol=1e-10)
  text = prefinetune_ab.table(rows)
  assert text.count("\n") == 5 and "(b) family vs (a) all" in text
