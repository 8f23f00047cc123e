"""Runs grid cells through the train binary: skip finished cells, resume the rest, N at a time.

Why subprocesses: each cell must be exactly what `mtl-train` does on its own (same gin,
same resume logic, a fresh JAX/XLA process), and a crash in one cell must not take the
sweep down. A cell is finished when its results.json is at the final step (TRAIN_STEPS
from the grid, else from the config.gin the binary wrote) and it was run with the same
arguments; an unfinished cell is simply launched again, and the binary resumes from the
checkpoints in its MODEL_DIR. Every launch appends to MODEL_DIR/train.log and to
MODEL_DIR/compare_run.json (arguments, wall time, return code per attempt).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import os
import pathlib
import re
import subprocess
import threading
import time
from typing import Callable, Mapping, Sequence

from mtl_jax.run import lock as dir_lock
from mtl_jax.compare.grid import Cell

RUN_RECORD = "compare_run.json"
LOG_FILE = "train.log"
_TRAIN_STEPS = re.compile(r"^TRAIN_STEPS\s*=\s*(\d+)\s*$", re.M)

Launcher = Callable[[Sequence[str], pathlib.Path, Mapping[str, str]], int]


def cell_dir(exp_dir: os.PathLike | str, cell: Cell) -> pathlib.Path:
  return pathlib.Path(exp_dir) / "runs" / cell.cell_id


def cell_args(cell: Cell, model_dir: pathlib.Path) -> list[str]:
  """The binary's arguments (without the interpreter prefix): what 'same run' compares."""
  return cell.argv((), model_dir)


def read_record(model_dir: pathlib.Path) -> dict:
  path = model_dir / RUN_RECORD
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return {}


def target_steps(cell: Cell, model_dir: pathlib.Path) -> int | None:
  steps = cell.train_steps()
  if steps is None:
    try:
      m = _TRAIN_STEPS.search((model_dir / "config.gin").read_text())
    except OSError:
      m = None
    steps = int(m.group(1)) if m else None
  return steps


def results_step(model_dir: pathlib.Path) -> int | None:
  try:
    return int(json.loads((model_dir / "results.json").read_text())["step"])
  except (OSError, ValueError, KeyError, TypeError):
    return None


def is_done(cell: Cell, model_dir: pathlib.Path) -> bool:
  """results.json at the final step, from a run with these arguments (when we launched it)."""
  step, target = results_step(model_dir), target_steps(cell, model_dir)
  if step is None or target is None or step < target:
    return False
  record = read_record(model_dir)
  return not record or record.get("args") == cell_args(cell, model_dir)


def subprocess_launcher(argv: Sequence[str], log_path: pathlib.Path, env: Mapping[str, str]) -> int:
  """Runs argv with stdout+stderr appended to log_path; returns the exit code."""
  with open(log_path, "a") as log:
    log.write(f"\n===== mtl-compare {datetime.datetime.now().isoformat(timespec='seconds')}: "
              f"{' '.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=dict(env))
    try:
      return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the child too: let it save its checkpoint
      try:
        proc.wait(timeout=120)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
      raise


@dataclasses.dataclass
class Outcome:
  cell_id: str
  status: str          # 'skipped' (already finished), 'running' (another trainer holds its MODEL_DIR),
                       # 'ran', 'incomplete' (rc 0, not at the end), 'failed'
  returncode: int | None = None
  wall_s: float = 0.0
  error: str = ""


def _last_error(log_path: pathlib.Path) -> str:
  try:
    lines = log_path.read_text(errors="replace").splitlines()
  except OSError:
    return ""
  for line in reversed(lines):
    if "error" in line.lower():
      return line.strip()[:300]
  return lines[-1].strip()[:300] if lines else ""


def run_cell(cell: Cell, exp_dir, binary: Sequence[str], env: Mapping[str, str],
             launcher: Launcher = subprocess_launcher) -> Outcome:
  """Launches one unfinished cell and records the attempt."""
  model_dir = cell_dir(exp_dir, cell)
  model_dir.mkdir(parents=True, exist_ok=True)
  args = cell_args(cell, model_dir)
  start = time.time()
  rc = launcher([*binary, *args], model_dir / LOG_FILE, env)
  wall = time.time() - start
  record = read_record(model_dir)
  record["args"] = args
  record.setdefault("attempts", []).append(
      {"started": datetime.datetime.fromtimestamp(start).isoformat(timespec="seconds"),
       "wall_s": round(wall, 3), "returncode": rc})
  (model_dir / RUN_RECORD).write_text(json.dumps(record, indent=1))
  if rc != 0:
    return Outcome(cell.cell_id, "failed", rc, wall, _last_error(model_dir / LOG_FILE))
  return Outcome(cell.cell_id, "ran" if is_done(cell, model_dir) else "incomplete", rc, wall)


def run_cells(cells: Sequence[Cell], exp_dir, binary: Sequence[str], parallel: int = 1,
              env: Mapping[str, str] | None = None, launcher: Launcher = subprocess_launcher,
              echo: Callable[[str], None] = print) -> list[Outcome]:
  """Runs every unfinished cell (`parallel` at a time), skipping finished ones."""
  env = dict(os.environ if env is None else env)
  outcomes: dict[str, Outcome] = {}
  todo = []
  for cell in cells:
    if is_done(cell, cell_dir(exp_dir, cell)):
      outcomes[cell.cell_id] = Outcome(cell.cell_id, "skipped")
    elif (owner := dir_lock.live_owner(cell_dir(exp_dir, cell))) is not None:  # a rerun while it runs
      outcomes[cell.cell_id] = Outcome(cell.cell_id, "running", error=f"in use by {dir_lock.describe(owner)}")
      echo(f"mtl-compare: running elsewhere, skipped: {cell.cell_id} ({dir_lock.describe(owner)})")
    else:
      todo.append(cell)
  finished = sum(o.status == "skipped" for o in outcomes.values())
  echo(f"mtl-compare: {len(cells)} cells: {finished} finished, {len(todo)} to run "
       f"({parallel} at a time)")
  lock, started = threading.Lock(), time.time()

  def report(cell, outcome):
    with lock:
      outcomes[cell.cell_id] = outcome
      done = sum(1 for o in outcomes.values() if o.status not in ("skipped", "running"))
      elapsed = time.time() - started
      eta = elapsed / done * (len(todo) - done)
      extra = f": {outcome.error}" if outcome.error else ""
      echo(f"mtl-compare: [{done}/{len(todo)}] {outcome.status} {cell.cell_id} in {outcome.wall_s:.1f}s "
           f"(elapsed {elapsed / 60:.1f} min, ~{eta / 60:.1f} min left){extra}")

  def one(cell):
    report(cell, run_cell(cell, exp_dir, binary, env, launcher))

  if parallel <= 1:
    for cell in todo:
      one(cell)
  else:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=parallel)
    try:
      for future in [pool.submit(one, cell) for cell in todo]:
        future.result()
    finally:
      pool.shutdown(wait=True, cancel_futures=True)
  return [outcomes[c.cell_id] for c in cells if c.cell_id in outcomes]
