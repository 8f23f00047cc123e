"""mtl-compare's `merge` axis: merged arms built from the grid's own single-task cells, no extra training.

    experiment.merge = ['task_arithmetic', 'ties', 'dare_ties', 'fisher', 'regmean']
    experiment.merge_grid = {'ties': {'density': [0.1, 0.2]}}   # optional: replaces axes of a method's grid

Why from the grid's cells: "fine-tune each task alone, then merge" answers the same question as co-training
only when both use the same single-task runs, budget and evaluation. So per seed and per axis setting, the
single-task cells of a mixture's tasks are merged by mtl-merge (one subprocess per arm, like every cell; it
picks lambda / density / drop rate on validation and scores the pick on the test split) into
EXP_DIR/runs/merge_<method>__<mixture>__...__seed<S>, an ordinary MODEL_DIR. collect / aggregate / report
then read it as the arm 'merge_<method>' beside the trained strategies: same statistics, paired by seed
against single-task. An arm is rebuilt when its merge.json names other source cells (a rerun single cell) or
its merge did not finish; the old directory is kept as <arm>.stale.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import sys
from typing import Callable, Mapping, Sequence

from mtl_jax.compare import runner
from mtl_jax.compare.grid import SINGLE, Cell, slug
from mtl_jax.compare.merge_check import MERGEABLE, validate  # noqa: F401 (validate: grid calls it there)
from mtl_jax.run import finished

PREFIX = "merge_"            # an arm's strategy label: merge_<method>
MERGE_RECORD = "merge.json"


@dataclasses.dataclass(frozen=True)
class Arm:
  """One merged MODEL_DIR: `cell` (kind 'mtl', strategy merge_<method>) from the single cells `sources`."""
  cell: Cell
  method: str
  sources: tuple


def label(method: str) -> str:
  return PREFIX + method


def plan(exp, cells: Sequence[Cell]) -> list[Arm]:
  """Every merged arm of the grid: per mixture, seed and setting of the baseline axes, one per method,
  from that seed's / setting's single-task cells of the mixture's tasks (which cells() made)."""
  if not exp.merge:
    return []
  singles = {(c.mixture, c.seed, c.axes): c for c in cells if c.kind == "single"}
  arms, seen = [], set()
  for cell in cells:
    if cell.kind != "single" or (cell.seed, cell.axes) in seen:
      continue
    seen.add((cell.seed, cell.axes))
    for mixture in exp.mixtures:
      tasks = exp.tasks_of(mixture)
      if len(tasks) < 2:
        raise ValueError(f"experiment.merge: mixture {mixture!r} has {len(tasks)} task; merging needs at least 2")
      sources = tuple(singles[(t, cell.seed, cell.axes)] for t in tasks)
      for method in exp.merge:
        name = "__".join([slug(label(method)), slug(mixture), *(slug(f"{n.split('.')[-1]}={v}") for n, v in cell.axes),
                          f"seed{cell.seed}"])
        bindings = tuple((k, v) for k, v in cell.bindings if k != "MIXTURE_OR_TASK_NAME")  # TRAIN_STEPS: the checkpoint step
        arms.append(Arm(Cell(name, "mtl", label(method), mixture, cell.seed, cell.axes, (), bindings), method, sources))
  return arms


def command(arm: Arm, exp_dir, out: pathlib.Path, grids: Mapping | None = None) -> list[str]:
  """mtl-merge's argv. --trust_config: the sources' config.gin were written by this experiment's own cells
  from the experiment's gin files (any module they import, the cells already imported)."""
  grid = dict((grids or {}).get(arm.method) or {})
  return [sys.executable, "-m", "mtl_jax.merge", "--runs", *(str(runner.cell_dir(exp_dir, s)) for s in arm.sources),
          "--out", str(out), "--method", arm.method, "--trust_config",
          *(a for k, vs in grid.items() for a in ("--grid", f"{k}={','.join(map(str, vs))}"))]


def _source_names(record: dict) -> list[str]:
  return sorted(pathlib.Path(s["model_dir"]).name for s in record.get("sources", []))


def is_done(arm: Arm, exp_dir) -> bool:
  """Merged (results.json at the checkpoint step, committed) by this method from these source cells."""
  model_dir = runner.cell_dir(exp_dir, arm.cell)
  if not finished.state(model_dir, runner.target_steps(arm.cell, model_dir)).finished:
    return False
  record = finished.read_json(model_dir / MERGE_RECORD)[0] or {}
  return record.get("method") == arm.method and _source_names(record) == sorted(s.cell_id for s in arm.sources)


def run(arms: Sequence[Arm], exp_dir, grids: Mapping | None = None, env: Mapping[str, str] | None = None,
        launcher: Callable = runner.subprocess_launcher, echo: Callable[[str], None] = print) -> dict[str, str]:
  """Merges every arm not merged yet whose single-task cells are finished; {cell_id: status}."""
  exp_dir = pathlib.Path(exp_dir)
  env = dict(os.environ if env is None else env)
  todo = [a for a in arms if not is_done(a, exp_dir)]
  if arms:
    echo(f"mtl-compare: {len(arms)} merged arms: {len(arms) - len(todo)} done, {len(todo)} to merge")
  status = {a.cell.cell_id: "skipped" for a in arms if a not in todo}
  for k, arm in enumerate(todo, 1):
    waiting = [s.cell_id for s in arm.sources if not runner.is_done(s, runner.cell_dir(exp_dir, s))]
    if waiting:
      status[arm.cell.cell_id] = "waiting"
      echo(f"mtl-compare: [merge {k}/{len(todo)}] not merged {arm.cell.cell_id}: single-task cells not finished "
           f"({', '.join(waiting)})")
      continue
    out = runner.cell_dir(exp_dir, arm.cell)  # mtl-merge writes it (config.gin names it as MODEL_DIR)
    if out.exists():  # an interrupted merge, or one from other source cells: kept beside, never deleted
      stale = out.with_name(out.name + ".stale")
      shutil.rmtree(stale, ignore_errors=True)
      os.replace(out, stale)
    log = out.with_name(out.name + ".merge.log")  # beside: mtl-merge wants a new directory
    argv = command(arm, exp_dir, out, grids)
    rc = launcher(argv, log, env)
    if rc != 0 or not is_done(arm, exp_dir):
      status[arm.cell.cell_id] = "failed"
      echo(f"mtl-compare: [merge {k}/{len(todo)}] failed {arm.cell.cell_id} (rc {rc}): "
           f"{runner._last_error(log)} (log: {log})")
      continue
    (out / runner.RUN_RECORD).write_text(json.dumps({"args": argv[1:], "attempts": [{"returncode": rc}]}))
    if log.exists():
      shutil.move(str(log), str(out / runner.LOG_FILE))
    status[arm.cell.cell_id] = "merged"
    echo(f"mtl-compare: [merge {k}/{len(todo)}] merged {arm.cell.cell_id}")
  return status


def markdown(cells: Sequence[dict]) -> list[str]:
  """report.md's section: each merged arm's validation pick (merge.json of each seed's MODEL_DIR)."""
  rows = []
  for c in cells:
    if not str(c.get("strategy", "")).startswith(PREFIX) or c.get("status") != "done":
      continue
    record = finished.read_json(pathlib.Path(c["model_dir"]) / MERGE_RECORD)[0] or {}
    grid = "; ".join(" ".join(f"{k}={v}" for k, v in g["hparams"].items()) + f": {g['validation_average']:.4f}"
                     for g in record.get("grid", []))
    pick = " ".join(f"{k}={v}" for k, v in (record.get("hparams") or {}).items()) or "(none)"
    axes = "".join(f", {k}={v}" for k, v in c["axes"].items())
    rows.append(f"| {c['strategy']}{axes} | {c['mixture']} | {c['seed']} | {grid or '–'} | {pick} |")
  if not rows:
    return []
  return ["## Merged arms", "", f"Each merge_<method> arm merges that seed's {SINGLE}-task cells of the mixture "
          "(mtl-merge, no extra training); its hyperparameters are picked on the validation average over the "
          "method's grid and the comparison above uses the pick's test-split scores.", "",
          "| arm | mixture | seed | validation average per setting | pick |", "|---|---|---|---|---|", *rows]
