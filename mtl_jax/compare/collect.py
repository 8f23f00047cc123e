"""Reads one cell's MODEL_DIR into a plain dict: final scores, curve, size, speed, mixing weights.

Why a separate reader: aggregation, report and plots must work on any finished (or
partly finished) experiment directory without importing JAX or re-running anything,
and tests can feed it hand-written MODEL_DIRs.
"""

from __future__ import annotations

import glob
import json
import math
import pathlib
import re
import statistics

from mtl_jax.step import metrics
from mtl_jax.compare import runner
from mtl_jax.run import finished
from mtl_jax.compare.grid import Cell

MIXING_WEIGHTS_FILE = "mixing_weights.json"
# Metric names where lower is better (l_t = 1 in delta-m). metrics.headline never picks one
# today (mse is not a headline), but a task whose headline is one gets the sign flipped.
LOWER_IS_BETTER = frozenset({"mse", "mae", "rmse", "loss", "perplexity", "error", "error_rate", "wer"})
_PARAMS = re.compile(r"mtl_jax: sharing=\S+ tasks=\d+ (?:layout=\S+ )?parameters ((?:\w+=[\d,]+ ?)+)")
_SHARED_LOG = re.compile(r"in one step; its log: (.+?)\s*$", re.M)


def headline_metric(task_result: dict) -> str:
  """The name of the metric metrics.headline() chose for this task's result."""
  for key in metrics.HEADLINE_ORDER:
    if key in task_result:
      return key
  for key in LOWER_IS_BETTER:
    if key in task_result:
      return key
  return "headline"


def task_scores(record: dict) -> dict:
  """{task: {'metric', 'value', 'lower_is_better'}} from a results.json-style record."""
  out = {}
  for task, result in record.get("tasks", {}).items():
    name = headline_metric(result)
    value = result.get("headline", result.get(name))
    out[task] = {"metric": name, "value": float(value), "lower_is_better": name in LOWER_IS_BETTER}
  return out


def read_json(path: pathlib.Path):
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def read_history(model_dir: pathlib.Path) -> list[dict]:
  """eval_history.jsonl as [{'step', 'tasks': {task: headline}, 'average'}], one per step
  (the last record wins: a resumed run may evaluate the same step again)."""
  by_step = {}
  try:
    lines = (model_dir / "eval_history.jsonl").read_text().splitlines()
  except OSError:
    return []
  for line in lines:
    try:
      rec = json.loads(line)
      by_step[int(rec["step"])] = {"step": int(rec["step"]), "average": float(rec["average"]),
                                   "tasks": {t: float(r["headline"]) for t, r in rec["tasks"].items()}}
    except (ValueError, KeyError, TypeError):
      continue
  return [by_step[s] for s in sorted(by_step)]


def _log_lines(model_dir: pathlib.Path) -> str:
  """The cell's train.log; a cell trained with other seeds in one step (compare/seed_groups.py) logs only a
  pointer to the group's log, whose start line is the same for every seed: that log's text follows."""
  try:
    text = (model_dir / runner.LOG_FILE).read_text(errors="replace")
  except OSError:
    return ""
  pointers = _SHARED_LOG.findall(text)
  if pointers and not _PARAMS.search(text):
    try:
      return text + pathlib.Path(pointers[-1]).read_text(errors="replace")
    except OSError:
      pass
  return text


def read_params(model_dir: pathlib.Path) -> dict | None:
  """Parameter counts from the binary's start line in train.log (last run; the seed group's log when the cell
  ran in one), else run_spec.json (total only)."""
  found = _PARAMS.findall(_log_lines(model_dir))
  if found:
    return {k: int(v.replace(",", "")) for k, v in (kv.split("=") for kv in found[-1].split())}
  spec = read_json(model_dir / "run_spec.json")
  if spec and isinstance(spec.get("param_shapes"), dict):
    return {"total": int(sum(math.prod(s) for s in spec["param_shapes"].values()))}
  return None


def read_steps_per_second(model_dir: pathlib.Path) -> float | None:
  """Median of the logged train/steps_per_second, dropping each event file's first record
  (it includes compilation); None without TensorBoard events."""
  files = sorted(glob.glob(str(model_dir / "train" / "events.out.tfevents*")))
  if not files:
    return None
  try:
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.util import tensor_util
  except ImportError:
    return None
  kept, every = [], []
  for path in files:
    values = []
    try:
      for event in event_file_loader.EventFileLoader(path).Load():
        for v in event.summary.value:
          if v.tag == "steps_per_second":
            values.append(float(tensor_util.make_ndarray(v.tensor)) if v.HasField("tensor") else v.simple_value)
    except Exception:  # a truncated event file (killed run) still gives what it has
      pass
    every += values
    kept += values[1:]
  values = kept or every
  return float(statistics.median(values)) if values else None


def collect_cell(cell: Cell, model_dir: pathlib.Path) -> dict:
  """Everything the report needs from one cell, with status 'done' / 'incomplete' /
  'failed' / 'missing'."""
  results = read_json(model_dir / "results.json")
  record = runner.read_record(model_dir)
  attempts = record.get("attempts", [])
  target = runner.target_steps(cell, model_dir)
  step = int(results["step"]) if results else None
  if results and finished.state(model_dir, target).finished:  # final step AND its checkpoint committed
    status = "done"
  elif attempts and attempts[-1].get("returncode") not in (0, None):
    status = "failed"
  else:
    status = "incomplete" if results else "missing"
  mixing = read_json(model_dir / MIXING_WEIGHTS_FILE)
  return {
      "cell_id": cell.cell_id, "kind": cell.kind, "strategy": cell.strategy, "mixture": cell.mixture,
      "seed": cell.seed, "axes": cell.axes_dict, "status": status, "step": step, "target_steps": target,
      "average": float(results["average"]) if results else None,
      "tasks": task_scores(results) if results else {},
      # held-out test split on the validation-selected checkpoint (run/held_out.py); the comparison reads it
      "test": task_scores({"tasks": results["test"]}) if results and results.get("test") else {},
      "selected_step": results.get("selected_step") if results else None,
      "history": read_history(model_dir),
      "params": read_params(model_dir),
      "steps_per_second": read_steps_per_second(model_dir),
      "wall_s": round(sum(a.get("wall_s", 0.0) for a in attempts), 3) if attempts else None,
      "attempts": len(attempts),
      "mixing_weights": mixing if isinstance(mixing, dict) and mixing else None,
      "model_dir": str(model_dir),
  }


def collect(cells, exp_dir) -> list[dict]:
  return [collect_cell(c, runner.cell_dir(exp_dir, c)) for c in cells]
