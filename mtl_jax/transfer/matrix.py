"""Stage-2 results -> the transfer matrix: mean / std / n per (source, target, regime), gain vs baseline.

The score of a cell is its target's headline metric (results.json, final step; lower-is-better
metrics flipped so that a positive gain always means the source helped). The gain of a source is
mean(source) - mean(baseline) on the same target and regime; it is marked 'within noise' (≈) when
smaller than the larger of the two seed stds (unknown with one seed).
"""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

from mtl_jax.compare import aggregate, collect, runner
from mtl_jax.compare.grid import Cell
from mtl_jax.transfer.grid import NONE

FIELDS = ("source", "target", "regime", "metric", "mean", "std", "n", "baseline_mean", "baseline_std", "gain",
          "relative_gain", "within_noise")


def cell_score(cell: Cell, model_dir: pathlib.Path) -> tuple[str, float] | None:
  """(metric, signed score) of a finished stage-2 cell, or None."""
  record = collect.read_json(model_dir / "results.json")
  if not record or not runner.is_done(cell, model_dir):
    return None
  score = collect.task_scores(record).get(cell.mixture)
  if score is None:
    return None
  return score["metric"], (-score["value"] if score["lower_is_better"] else score["value"])


def rows(cells: Sequence[Cell], exp_dir) -> tuple[list[dict], list[dict]]:
  """(per-cell scores, matrix rows); unfinished cells are left out (and counted by the caller)."""
  per_cell, groups = [], {}
  for cell in cells:
    got = cell_score(cell, runner.cell_dir(exp_dir, cell))
    axes = cell.axes_dict
    if got is None:
      continue
    metric, value = got
    per_cell.append({"cell_id": cell.cell_id, "seed": cell.seed, "metric": metric, "score": value, **axes})
    groups.setdefault((axes["source"], axes["target"], axes["regime"]), (metric, []))[1].append(value)
  stats = {key: (metric, *aggregate.mean_std(values)) for key, (metric, values) in groups.items()}
  out = []
  for (source, target, regime), (metric, mean, std, n) in stats.items():
    base = stats.get((NONE, target, regime))
    row = {"source": source, "target": target, "regime": regime, "metric": metric, "mean": mean, "std": std,
           "n": n, "baseline_mean": None, "baseline_std": None, "gain": None, "relative_gain": None,
           "within_noise": None}
    if base is not None and source != NONE:
      _, b_mean, b_std, _ = base
      gain = mean - b_mean
      row.update(baseline_mean=b_mean, baseline_std=b_std, gain=gain,
                 relative_gain=aggregate.relative_change(mean, b_mean),
                 within_noise=aggregate.within_noise(gain, std, b_std))
    out.append(row)
  out.sort(key=lambda r: (r["regime"], r["target"], r["source"] != NONE, r["source"]))
  return per_cell, out


def write_csv(path: pathlib.Path, matrix: Sequence[dict]) -> None:
  def fmt(value):
    if value is None or (isinstance(value, float) and value != value):  # None / NaN: empty
      return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
  lines = [",".join(FIELDS)] + [",".join(fmt(r[f]) for f in FIELDS) for r in matrix]
  path.write_text("\n".join(lines) + "\n")


def write_json(path: pathlib.Path, spec: dict, per_cell: Sequence[dict], matrix: Sequence[dict],
               missing: Sequence[str]) -> None:
  clean = lambda v: None if isinstance(v, float) and v != v else v  # NaN -> null
  path.write_text(json.dumps({"experiment": spec, "cells": [{k: clean(v) for k, v in c.items()} for c in per_cell],
                              "matrix": [{k: clean(v) for k, v in r.items()} for r in matrix],
                              "unfinished": list(missing)}, indent=1))
