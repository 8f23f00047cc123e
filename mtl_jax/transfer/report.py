"""report.md and one gain heatmap per data regime (rows: sources, columns: targets)."""

from __future__ import annotations

import math
import pathlib
from typing import Sequence

import numpy as np

from mtl_jax.compare import stats
from mtl_jax.transfer.grid import NONE


_MARK = {1: "▲", -1: "▼"}  # a Holm-significant gain / loss


def _num(value, digits=3) -> str:
  return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _pm(mean, lo, hi) -> str:
  """mean ± half-width of the 95% t interval (no ± with one seed)."""
  missing = lo is None or hi is None or math.isnan(lo) or math.isnan(hi)
  return _num(mean) + ("" if missing else f" ± {_num((hi - lo) / 2)}")


def gain_text(row) -> str:
  """gain [95% CI] and ▲/▼ where the Holm-adjusted paired test says so, n.s. otherwise."""
  if row["gain"] is None:
    return "–"
  if row.get("p") is None:
    return f"{row['gain']:+.3f} ({row.get('note') or stats.NO_TEST})"
  mark = _MARK.get(row["direction"], "n.s.")
  return f"{row['gain']:+.3f} [{row['gain_ci_low']:+.3f}, {row['gain_ci_high']:+.3f}] {mark}"


def _power(row) -> str:
  if row.get("detectable") is None and row.get("seeds_needed") is None:
    return "–"
  det = "–" if row.get("detectable") is None else f"{row['detectable']:.3f}"  # None: constant differences
  need = "–" if row.get("seeds_needed") is None else str(row["seeds_needed"])
  return f"{det} / {need}"


def heatmap(matrix: Sequence[dict], regime: str, path: pathlib.Path) -> str | None:
  """Gain of each source on each target in one regime (diverging around 0); None if empty."""
  rows = [r for r in matrix if r["regime"] == regime and r["source"] != NONE and r["gain"] is not None]
  if not rows:
    return None
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib.figure import Figure
  from mtl_jax.compare.plots import _heatmap
  sources = sorted({r["source"] for r in rows})
  targets = sorted({r["target"] for r in rows})
  values = np.full((len(sources), len(targets)), np.nan)
  for r in rows:
    values[sources.index(r["source"]), targets.index(r["target"])] = r["gain"]
  fig = Figure(figsize=(max(6.0, 3.0 + 1.1 * len(targets)), 2.4 + 0.5 * len(sources)))
  ax = fig.add_subplot()
  image = _heatmap(ax, values, targets, sources, f"transfer gain vs no intermediate task ({regime})")
  ax.set_xlabel("target")
  ax.set_ylabel("source (stage 1)")
  fig.colorbar(image, ax=ax, shrink=0.8)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  return str(path)


def glance(matrix: Sequence[dict], regime: str) -> list[str]:
  """The regime's matrix at a glance (rows: sources, columns: targets): each gain with ▲/▼ only where Holm
  says so; the `none` row holds each target's own score, so a gain reads against it."""
  rows = [r for r in matrix if r["regime"] == regime]
  targets = list(dict.fromkeys(r["target"] for r in rows))
  sources = [NONE, *dict.fromkeys(r["source"] for r in rows if r["source"] != NONE)]
  at = {(r["source"], r["target"]): r for r in rows}

  def cell(source, target):
    r = at.get((source, target))
    if r is None:
      return "·" if source == target else "–"
    if source == NONE:
      return _num(r["mean"])
    if r["gain"] is None:
      return "–"
    return f"{r['gain']:+.3f} {_MARK.get(r.get('direction') or 0, '')}".rstrip()

  lines = ["| source ↓ target → | " + " | ".join(targets) + " |", "|---" * (len(targets) + 1) + "|"]
  for source in sources:
    label = f"{NONE} (score)" if source == NONE else source
    lines.append(f"| {label} | " + " | ".join(cell(source, t) for t in targets) + " |")
  return lines


def markdown(spec: dict, matrix: Sequence[dict], figures: Sequence[str], unfinished: Sequence[str],
             exp_dir: pathlib.Path) -> str:
  lines = [f"# Transfer matrix: {spec.get('name', 'transfer')}", ""]
  if spec.get("description"):
    lines += [spec["description"], ""]
  regimes = ", ".join(f"{k}={'all' if v is None else v}" for k, v in spec["regimes"].items())
  lines += [f"Sources {', '.join(spec['sources']) or '–'}; targets {', '.join(spec['targets'])}; "
            f"regimes {regimes}; "
            f"seeds {', '.join(map(str, spec['seeds']))}. Score: the target's headline metric on the held-out "
            "test split, from the checkpoint validation selected (the final step's validation score for runs "
            "without a test split; mean ± half-width of the 95% t interval over seeds; lower-is-better metrics negated). "
            "Gain: source minus `none` (the target trained from the same starting point without stage 1), "
            "with its 95% CI; ▲/▼ only where the paired test stays significant after Holm, n.s. otherwise; "
            "'detectable / seeds' is what a non-significant row could have found with 80% power.", ""]
  tested = [r for r in matrix if r.get("p") is not None]
  lines += ["How the numbers were computed: " + stats.method_paragraph(
      max([r["n"] for r in matrix] or [0]), len(tested)), ""]
  for regime in dict.fromkeys(r["regime"] for r in matrix):
    lines += [f"## Regime `{regime}`", "", "Gain over `none` at a glance (▲/▼: Holm-significant; the rest n.s.):",
              "", *glance(matrix, regime), "", "| target | source | metric | score | n | gain [95% CI] | p (t) | "
              "p (sign flip) | p adj (Holm) | relative | detectable / seeds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in matrix if r["regime"] == regime):
      rel = "–" if r["relative_gain"] is None or math.isnan(r["relative_gain"]) else f"{100 * r['relative_gain']:+.1f}%"
      lines.append(f"| {r['target']} | {r['source']} | {r['metric']} | {_pm(r['mean'], r['ci_low'], r['ci_high'])} "
                   f"| {r['n']} | {gain_text(r)} | {stats.fmt_p(r.get('p'))} | {stats.fmt_p(r.get('p_perm'))} "
                   f"| {stats.fmt_p(r.get('p_adj'))} | {rel} | {_power(r)} |")
    lines.append("")
  for fig in figures:
    lines += [f"![{pathlib.Path(fig).stem}]({pathlib.Path(fig).relative_to(exp_dir)})", ""]
  if unfinished:
    lines += [f"Unfinished cells ({len(unfinished)}): {', '.join(unfinished)}", ""]
  return "\n".join(lines)
