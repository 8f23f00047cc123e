"""The truth a source ranking is scored against: mtl-transfer's matrix, checked before anything is embedded.

One line for each bad input: a regime to choose, cells the experiment asked for that have not finished
(a missing (target, source) cell), a target with fewer than 2 candidates, a cut-off k above a target's
candidates. --k left unset takes the cut-offs (1, 3) that fit every target.
"""

from __future__ import annotations

import json
import pathlib


def _expected_sources(record, regime, tasks) -> dict[str, list[str]]:
  """{target: the sources the experiment asked for} (mtl-transfer's spec), restricted to `tasks`."""
  from mtl_jax.transfer.grid import NONE
  spec = record.get("experiment") or {}
  if not spec.get("targets"):
    return {}
  pairs = spec.get("pairs") or {}
  out = {}
  for t in spec["targets"]:
    if t in tasks:
      out[t] = [s for s in pairs.get(t, spec.get("sources", [])) if s in tasks and s != t and s != NONE]
  return out


def read(args, tasks) -> tuple[dict, str, dict, dict]:
  """(truth[target][source], regime, ties, the record) from --transfer_matrix; one line on bad input."""
  from mtl_jax.taskemb import ranking
  record = json.loads(pathlib.Path(args.transfer_matrix).read_text())
  regimes = sorted({r["regime"] for r in record["matrix"]})
  regime = args.regime or (regimes[0] if len(regimes) == 1 else None)
  if regime is None:
    raise ValueError(f"the transfer matrix has regimes {regimes}: pick one with --regime")
  truth = ranking.truth_from_transfer(record, regime)
  truth = {t: {s: v for s, v in src.items() if s in tasks} for t, src in truth.items() if t in tasks}
  for target, wanted in _expected_sources(record, regime, tasks).items():
    missing = [s for s in wanted if s not in truth.get(target, {})]
    if missing:
      raise ValueError(f"the transfer matrix has missing cells: target {target!r} has no finished score for "
                       f"source(s) {missing} in regime {regime!r}; finish them (mtl-transfer resumes) or drop "
                       "those tasks from --tasks")
  if not truth:
    raise ValueError(f"the transfer matrix has no target among {tasks} with a source among them")
  if args.k is None:
    fewest = min(len(v) for v in truth.values())
    args.k = [k for k in (1, 3) if k <= fewest] or [1]
  for target, sources in truth.items():
    ranking.check_target(target, sources, args.k)
  return truth, regime, ranking.truth_ties(record, regime), record
