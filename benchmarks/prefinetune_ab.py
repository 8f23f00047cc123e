"""Pre-finetuning page: each source vs none AND the related family vs all other tasks, per target and regime.

Why: mtl-transfer's report tests each source against 'none'; the pre-finetuning question (Padmakumar et al. 2022)
is also "a small related subset or the large mixture?", a paired comparison of two sources. All comparisons are
paired over seeds (mtl_jax.compare.stats.paired_by_seed: paired t, sign flip) and Holm-adjusted together.
  python benchmarks/prefinetune_ab.py EXP_DIR/transfer_matrix.json > table.md
"""

from __future__ import annotations

import json
import sys

from mtl_jax.compare import stats

ALL = "pft_all_but_targets"


def comparisons(cells: list[dict]) -> list[dict]:
  """One row per comparison: target, regime, what, the paired test (with p_adj: Holm over all rows)."""
  by: dict[tuple, dict] = {}
  for c in cells:
    by.setdefault((c["target"], c["regime"], c["source"]), {})[c["seed"]] = c["score"]
  rows = []
  for (target, regime, source), scores in sorted(by.items()):
    if source != "none":
      label = "(b) family vs none" if source.startswith("pft_family") else "(a) all vs none"
      rows.append({"target": target, "regime": regime, "what": label,
                   "test": stats.paired_by_seed(scores, by[(target, regime, "none")])})
  for target, regime in sorted({(t, r) for t, r, _ in by}):
    family, everything = by.get((target, regime, f"pft_family_{target}")), by.get((target, regime, ALL))
    if family and everything:
      rows.append({"target": target, "regime": regime, "what": "(b) family vs (a) all",
                   "test": stats.paired_by_seed(family, everything)})
  stats.adjust([r["test"] for r in rows])  # Holm over all rows: p_adj, direction in each test
  return rows


def table(rows: list[dict]) -> str:
  lines = ["| target | regime | comparison | diff [95% CI] | p (t) | p (sign flip) | p adj (Holm) | n |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    t = r["test"]
    lines.append(f"| {r['target']} | {r['regime']} | {r['what']} | {t['diff']:+.3f} [{t['ci'][0]:+.3f}, "
                 f"{t['ci'][1]:+.3f}] {stats.arrow(t)} | {stats.fmt_p(t['p'])} | {stats.fmt_p(t['p_perm'])} | "
                 f"{stats.fmt_p(t['p_adj'])} | {t['n']} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 1:
    print("usage: python benchmarks/prefinetune_ab.py EXP_DIR/transfer_matrix.json", file=sys.stderr)
    return 2
  with open(argv[0]) as f:
    sys.stdout.write(table(comparisons(json.load(f)["cells"])))
  return 0


if __name__ == "__main__":
  sys.exit(main())
