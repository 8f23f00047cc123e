"""The ranking table (markdown / CSV) of mtl-taskemb: every method's scores, mean ± std over seeds."""

from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

from mtl_jax.taskemb import ranking

LOWER_IS_BETTER = ("regret", "rank_of_best")
LABELS = {"rank_of_best": "rank of best (ρ)", "ndcg_vu": "NDCG Vu"}


def label(metric: str) -> str:
  """A metric's column title: Vu et al.'s names where they are theirs."""
  return LABELS.get(metric, metric.replace("_", " "))


def summarise(scores: Mapping[str, Sequence[dict]]) -> list[dict]:
  """{method: [per-seed metric dicts]} -> rows {method, metric: (mean, std, n)}."""
  rows = []
  for method, per_seed in scores.items():
    row = {"method": method, "n": len(per_seed)}
    for key in per_seed[0]:
      row[key] = ranking.mean_std([s[key] for s in per_seed])
    rows.append(row)
  return rows


def _keys(rows) -> list[str]:
  return [k for k in rows[0] if k not in ("method", "n")]


def write_csv(path: pathlib.Path, rows: Sequence[dict]) -> None:
  keys = _keys(rows)
  lines = ["method,n," + ",".join(f"{k}_mean,{k}_std" for k in keys)]
  lines += [f"{r['method']},{r['n']}," + ",".join(f"{r[k][0]:.6g},{r[k][1]:.6g}" for k in keys) for r in rows]
  pathlib.Path(path).write_text("\n".join(lines) + "\n")


def table(rows: Sequence[dict]) -> str:
  keys = _keys(rows)
  head = "| method | seeds | " + " | ".join(
      f"{label(k)} {'↓' if k.startswith(LOWER_IS_BETTER) else '↑'}" for k in keys) + " |"
  lines = [head, "|" + "---|" * (len(keys) + 2)]
  for r in rows:
    cells = [f"{r[k][0]:.3f} ± {r[k][1]:.3f}" if r["n"] > 1 else f"{r[k][0]:.3f}" for k in keys]
    lines.append(f"| {r['method']} | {r['n']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def markdown(title: str, notes: Sequence[str], rows: Sequence[dict], figures: Sequence[pathlib.Path],
             groups: Mapping[str, str], out_dir: pathlib.Path, sections: Sequence[str] = ()) -> str:
  """notes, the mean ± std table, further sections (the CI / significance table), figures, groups."""
  parts = [f"# {title}", "", *notes, "", table(rows) if rows else "(no transfer matrix given: no ranking scores)", ""]
  for section in sections:
    parts += [section, ""]
  for f in figures:
    parts += [f"![{f.stem}]({f.relative_to(out_dir)})", ""]
  if groups:
    parts += ["## Proposed task groups", ""] + [f"- {m}: {g}" for m, g in groups.items()] + [""]
  return "\n".join(parts)
