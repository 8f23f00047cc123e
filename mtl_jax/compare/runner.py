"""Runs grid cells through the train binary: skip finished cells, resume the rest, N at a time.

Why subprocesses: each cell must be exactly what `mtl-train` does on its own (same gin,
same resume logic, a fresh JAX/XLA process), and a crash in one cell must not take the
sweep down. A cell is finished when its results.json is at the final step (TRAIN_STEPS
from the grid, else from the config.gin the binary wrote), that step's checkpoint is
committed (run/finished.py) and it was run with the same arguments, compared relative to
the experiment directory (a copied or moved experiment reruns nothing); an unfinished cell
is simply launched again, and the binary resumes from the checkpoints in its MODEL_DIR.
Every launch appends to MODEL_DIR/train.log and to MODEL_DIR/compare_run.json (arguments,
wall time, return code per attempt).

Two runners on one experiment: right before each launch the runner takes the cell's
MODEL_DIR lock (run/lock.py; the trainer it starts adopts it) and checks again that the cell
is not finished, so a cell is never launched twice; a cell another trainer holds is skipped as
'running' and looked at again after the pass (`wait=True`: until it is free). Damaged cell
files are named in one line each and the cell is rerun. SIGTERM / SIGINT to the runner are
forwarded to the running cells (each saves a checkpoint and exits), their attempts are
recorded, and `Interrupted` is raised: rerunning the same command resumes them.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import os
import pathlib
import signal
import subprocess
import threading
import time
from typing import Callable, Mapping, Sequence

from mtl_jax.run import finished
from mtl_jax.run import lock as dir_lock
from mtl_jax.run import grid_cache
from mtl_jax.compare.grid import Cell

RUN_RECORD = "compare_run.json"
LOG_FILE = "train.log"
EXP_DIR_MARK = "$EXP_DIR"  # what recorded arguments are compared with: paths relative to the experiment

Launcher = Callable[[Sequence[str], pathlib.Path, Mapping[str, str]], int]


def cell_dir(exp_dir: os.PathLike | str, cell: Cell) -> pathlib.Path:
  return pathlib.Path(exp_dir) / "runs" / cell.cell_id


def cell_args(cell: Cell, model_dir: pathlib.Path) -> list[str]:
  """The binary's arguments (without the interpreter prefix): what 'same run' compares."""
  return cell.argv((), model_dir)


def read_record(model_dir: pathlib.Path) -> dict:
  return finished.read_json(model_dir / RUN_RECORD)[0] or {}


def _write_record(model_dir: pathlib.Path, record: dict) -> None:
  tmp = model_dir / (RUN_RECORD + ".tmp")  # atomic: a kill never leaves a truncated record
  tmp.write_text(json.dumps(record, indent=1))
  os.replace(tmp, model_dir / RUN_RECORD)


def target_steps(cell: Cell, model_dir: pathlib.Path) -> int | None:
  steps = cell.train_steps()
  return finished.configured_steps(model_dir) if steps is None else steps


def results_step(model_dir: pathlib.Path) -> int | None:
  return finished.state(model_dir, None).step


def experiment_relative(args: Sequence[str]) -> list[str]:
  """Arguments with the experiment directory (MODEL_DIR's grandparent: EXP_DIR/runs/<cell>) as $EXP_DIR,
  so that a cell recorded before its experiment was copied or moved is still the same cell."""
  model_dir = next((a.split("=", 1)[1] for a in args if a.startswith("--gin.MODEL_DIR=")), None)
  if not model_dir:
    return list(args)
  exp = str(pathlib.PurePath(model_dir).parent.parent).rstrip("/") + "/"
  return [a.replace(exp, EXP_DIR_MARK + "/") for a in args]


def check(cell: Cell, model_dir: pathlib.Path) -> finished.State:
  """Finished (results.json at the final step, its checkpoint committed, same arguments), or why not."""
  found = finished.state(model_dir, target_steps(cell, model_dir))
  if not found.finished:
    return found
  record = read_record(model_dir)
  if record and experiment_relative(record.get("args", [])) != experiment_relative(cell_args(cell, model_dir)):
    return finished.State(False, found.step)  # launched with other arguments: run it with these
  return found


def is_done(cell: Cell, model_dir: pathlib.Path) -> bool:
  return check(cell, model_dir).finished


def set_aside_damaged(model_dir: pathlib.Path) -> str | None:
  """A run_spec.json that is not JSON is moved to run_spec.json.damaged (kept, never deleted) so the
  trainer can resume and write it again from the cell's arguments; returns the one line saying so."""
  path = model_dir / finished.RUN_SPEC
  _, damage = finished.read_json(path)
  if not damage:
    return None
  target, n = path.with_name(path.name + ".damaged"), 1
  while target.exists():
    target, n = path.with_name(f"{path.name}.damaged.{n}"), n + 1
  os.replace(path, target)
  return f"{path} is {damage}; moved to {target.name}, the cell resumes from its checkpoints and writes it again"


def subprocess_launcher(argv: Sequence[str], log_path: pathlib.Path, env: Mapping[str, str]) -> int:
  """Runs argv with stdout+stderr appended to log_path; returns the exit code."""
  with open(log_path, "a") as log:
    log.write(f"\n===== mtl-compare {datetime.datetime.now().isoformat(timespec='seconds')}: "
              f"{' '.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=dict(env))
    _CHILDREN.add(proc)  # SIGTERM / SIGINT to the runner are forwarded to it (forward_signals)
    if _STOPPING:  # the signal came while it was being started
      proc.send_signal(signal.SIGTERM)
    try:
      return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the child too: let it save its checkpoint
      try:
        proc.wait(timeout=120)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
      raise
    finally:
      _CHILDREN.discard(proc)


_CHILDREN: set = set()  # running cell processes of subprocess_launcher
_STOPPING: list = []     # non-empty while a forwarded signal is being handled


class Interrupted(KeyboardInterrupt):
  """The runner got SIGTERM / SIGINT: running cells were told to save and exit, nothing new started."""

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum
    self.returncode = 128 + signum


class forward_signals:
  """SIGTERM / SIGINT -> a stop flag, and SIGTERM to every running cell (each saves and exits 0, as
  the trainer does on SIGTERM). Installed only in the main thread (where Python delivers signals)."""

  def __init__(self):
    self.signum, self._previous = None, {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signum = self.signum or signum
    _STOPPING[:] = [signum]
    for proc in list(_CHILDREN):
      try:
        proc.send_signal(signal.SIGTERM)
      except (ProcessLookupError, OSError):
        pass

  def __exit__(self, *exc):
    _STOPPING.clear()
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


@dataclasses.dataclass
class Outcome:
  cell_id: str
  status: str          # 'skipped' (already finished), 'running' (another trainer holds its MODEL_DIR),
                       # 'ran', 'incomplete' (rc 0, not at the end), 'failed'
  returncode: int | None = None
  wall_s: float = 0.0
  error: str = ""
  problem: str = ""    # a damaged cell file, named in one line (the cell was rerun)


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
             launcher: Launcher = subprocess_launcher, echo: Callable[[str], None] = print) -> Outcome:
  """Launches one unfinished cell and records the attempt: under the cell's lock, after checking
  again (right before the launch) that no one else finished it meanwhile."""
  model_dir = cell_dir(exp_dir, cell)
  try:
    token = dir_lock.hold_for_launch(model_dir)
  except dir_lock.LockedError:
    owner = dir_lock.live_owner(model_dir)
    return Outcome(cell.cell_id, "running", error=f"in use by {dir_lock.describe(owner or {})}")
  try:
    if is_done(cell, model_dir):
      return Outcome(cell.cell_id, "skipped")
    problem = set_aside_damaged(model_dir) or ""
    if problem:
      echo(f"mtl-compare: damaged: {problem}")
    args = cell_args(cell, model_dir)
    start = time.time()
    rc = launcher([*binary, *args], model_dir / LOG_FILE, {**env, dir_lock.TOKEN_ENV: token})
    wall = time.time() - start
    record = read_record(model_dir)
    record["args"] = args
    record.setdefault("attempts", []).append(
        {"started": datetime.datetime.fromtimestamp(start).isoformat(timespec="seconds"),
         "wall_s": round(wall, 3), "returncode": rc})
    _write_record(model_dir, record)
  finally:
    dir_lock.release_launch(model_dir)
  if rc != 0:
    return Outcome(cell.cell_id, "failed", rc, wall, _last_error(model_dir / LOG_FILE), problem)
  return Outcome(cell.cell_id, "ran" if is_done(cell, model_dir) else "incomplete", rc, wall, problem=problem)


def for_each(items: Sequence, one: Callable, parallel: int) -> None:
  """one(item) for every item, `parallel` at a time. parallel <= 1: in this thread (an in-process launcher,
  as the tests use, installs signal handlers, which only the main thread may); else a thread pool,
  waited on in short slices so that signals are handled in between."""
  if parallel <= 1:
    for item in items:
      one(item)
    return
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=parallel)
  try:
    futures = [pool.submit(one, item) for item in items]
    while not all(f.done() for f in futures):
      concurrent.futures.wait(futures, timeout=0.5)
    for future in futures:
      future.result()
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


def cells_env(env: Mapping[str, str] | None, exp_dir) -> dict:
  """The environment every launch of a grid gets (one cell or K seeds in one step): this process's (or
  `env`), with the grid's shared caches at EXP_DIR/.cache unless the user chose a cache already."""
  env = dict(os.environ if env is None else env)
  env.setdefault(grid_cache.ENV, str(pathlib.Path(exp_dir).absolute() / grid_cache.GRID_DIR))
  return env


def run_cells(cells: Sequence[Cell], exp_dir, binary: Sequence[str], parallel: int = 1,
              env: Mapping[str, str] | None = None, launcher: Launcher = subprocess_launcher,
              echo: Callable[[str], None] = print, wait: bool = False, poll_s: float = 5.0) -> list[Outcome]:
  """Runs every unfinished cell (`parallel` at a time), skipping finished ones and those another trainer
  holds (looked at again after the pass; `wait`: until they are free). Raises Interrupted on SIGTERM/SIGINT."""
  env = cells_env(env, exp_dir)
  outcomes: dict[str, Outcome] = {}
  todo, damaged = [], {}
  for cell in cells:
    state = check(cell, cell_dir(exp_dir, cell))
    if state.finished:
      outcomes[cell.cell_id] = Outcome(cell.cell_id, "skipped")
      continue
    if state.problem:
      damaged[cell.cell_id] = state.problem
      echo(f"mtl-compare: damaged: {state.problem}; rerunning the cell")
    todo.append(cell)
  finished_n = len(outcomes)
  echo(f"mtl-compare: {len(cells)} cells: {finished_n} finished, {len(todo)} to run "
       f"({parallel} at a time)" + (f"; {len(damaged)} damaged (rerun)" if damaged else ""))
  lock, started, counter = threading.Lock(), time.time(), [0]

  def report(cell, outcome):
    with lock:
      outcomes[cell.cell_id] = outcome
      if outcome.status == "running":
        echo(f"mtl-compare: running elsewhere, skipped for now: {cell.cell_id} ({outcome.error})")
        return
      if outcome.status == "skipped":
        echo(f"mtl-compare: finished elsewhere, skipped: {cell.cell_id}")
        return
      counter[0] += 1
      elapsed = time.time() - started
      eta = elapsed / counter[0] * max(len(todo) - counter[0], 0)
      extra = f": {outcome.error}" if outcome.error else ""
      echo(f"mtl-compare: [{counter[0]}/{len(todo)}] {outcome.status} {cell.cell_id} in {outcome.wall_s:.1f}s "
           f"(elapsed {elapsed / 60:.1f} min, ~{eta / 60:.1f} min left){extra}")

  with forward_signals() as signals:
    def one(cell):
      if signals.signum is None:  # after a signal nothing new starts
        report(cell, run_cell(cell, exp_dir, binary, env, launcher, echo))

    pending = todo
    while pending:
      for_each(pending, one, parallel)
      held = [c for c in todo if outcomes.get(c.cell_id, Outcome("", "")).status == "running"]  # this or earlier passes
      pending = []
      while held and signals.signum is None:  # the next pass: cells whose trainer has finished since
        pending = [c for c in held if dir_lock.live_owner(cell_dir(exp_dir, c)) is None]
        if pending or not wait:
          break
        time.sleep(poll_s)
    if signals.signum is not None:
      echo(f"mtl-compare: {signal.Signals(signals.signum).name}: running cells were told to save a checkpoint "
           "and exit; rerun the same command to resume them")
      raise Interrupted(signals.signum)
  for cell_id, problem in damaged.items():
    echo(f"mtl-compare: damaged cell {cell_id}: {outcomes[cell_id].status} ({problem})")
  return [outcomes[c.cell_id] for c in cells if c.cell_id in outcomes]
