"""Stage-2 results -> the transfer matrix: mean / std / n per (source, target, regime), gain vs baseline.

The score of a cell is its target's headline metric on the held-out test split, read from the
checkpoint validation selected (results.json 'test', run/held_out.py; runs without it: the final
validation score); lower-is-better metrics flipped so that a positive gain always means the source helped). The gain of a source is
mean(source) - mean(baseline) on the same target and regime, tested paired over the seeds both
finished (same seed = same target data order and head init; compare/stats.py): paired t p,
sign-flip p, Holm over every source-vs-none row of the experiment, direction +1 / -1 only where
the adjusted p < 0.05; with one seed there is no test.
"""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

from mtl_jax.compare import aggregate, collect, runner, stats
from mtl_jax.compare.grid import Cell
from mtl_jax.transfer.grid import NONE

FIELDS = ("source", "target", "regime", "metric", "mean", "std", "n", "baseline_mean", "baseline_std", "gain",
          "relative_gain", "ci_low", "ci_high", "gain_ci_low", "gain_ci_high", "p", "p_perm", "p_adj", "direction",
          "detectable", "seeds_needed")
TEST_KEYS = ("p", "p_perm", "p_adj", "direction", "detectable", "seeds_needed")


def cell_score(cell: Cell, model_dir: pathlib.Path) -> tuple[str, float] | None:
  """(metric, signed score) of a finished stage-2 cell, or None."""
  record = collect.read_json(model_dir / "results.json")
  if not record or not runner.is_done(cell, model_dir):
    return None
  score = collect.task_scores({"tasks": record["test"]} if record.get("test") else record).get(cell.mixture)
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
    groups.setdefault((axes["source"], axes["target"], axes["regime"]), (metric, {}))[1][cell.seed] = value
  summary = {key: (metric, *aggregate.mean_std(by_seed.values()), by_seed)
             for key, (metric, by_seed) in groups.items()}
  out, tests = [], []
  for (source, target, regime), (metric, mean, std, n, by_seed) in summary.items():
    base = summary.get((NONE, target, regime))
    lo, hi = stats.t_interval(list(by_seed.values()))
    row = {"source": source, "target": target, "regime": regime, "metric": metric, "mean": mean, "std": std,
           "n": n, "baseline_mean": None, "baseline_std": None, "gain": None, "relative_gain": None,
           "ci_low": lo, "ci_high": hi, "gain_ci_low": None, "gain_ci_high": None, "note": "",
           **dict.fromkeys(TEST_KEYS)}
    if base is not None and source != NONE:
      _, b_mean, b_std, _, b_by_seed = base
      test = stats.paired_by_seed(by_seed, b_by_seed)  # scores are signed: higher is better
      tests.append((row, test))
      row.update(baseline_mean=b_mean, baseline_std=b_std, gain=mean - b_mean,
                 relative_gain=aggregate.relative_change(mean, b_mean), note=test["note"])
      if test["p"] is not None:
        row.update(gain_ci_low=test["ci"][0], gain_ci_high=test["ci"][1])
    out.append(row)
  stats.adjust([t for _, t in tests])
  for row, test in tests:
    row.update({k: test[k] for k in TEST_KEYS}, direction=test["direction"] if test["p"] is not None else None)
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
