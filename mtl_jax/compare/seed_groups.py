"""`experiment.seeds_per_step=K` (mtl-compare --seeds_per_step=K): a cell's seeds run K at a time in one
trainer, as one vmapped step (trainer.train.seeds, run/seeds_in_step.py).

Why here and not in the grid: the cells stay exactly the cells of the grid (one MODEL_DIR, one
results.json, one compare_run.json each, recorded with the cell's own single-seed arguments), so a
grid run with the option and one without find each other's cells finished, and collect / report see
the same cells. Only the launch differs: cells that differ in nothing but their seed (same arm,
mixture, axes, bindings) are grouped, K per launch, into one `--gin.trainer.train.seeds=[...]`
command whose MODEL_DIR is the cells' directory with 'seed{seed}' as the template. The runner takes
each cell's lock and hands all of them to the trainer (run/lock.py: several tokens, comma-separated).
"""

from __future__ import annotations

import datetime
import time
from typing import Callable, Sequence

from mtl_jax.compare import runner
from mtl_jax.compare.grid import Cell, binding_arg
from mtl_jax.compare.seeds_check import SEED_BINDING, check  # noqa: F401 (check: grid calls it there)
from mtl_jax.run import lock as dir_lock

SEEDS_BINDING = "trainer.train.seeds"
LANE_DIRS_BINDING, LANE_SOURCES_BINDING = "lanes.model_dirs", "lanes.init_from"
INIT_FROM_BINDING = "init_from.model_dir"


def _init_from_template(cell: Cell) -> str | None:
  """The cell's init_from.model_dir with its seed as '{seed}' when it is its own seed's source run
  (mtl-transfer: a target starts from EXP_DIR/runs/<source>__seed<S>), else None. Targets of one
  source then group like any cell: each lane fills in its seed (run/starting_point.for_run)."""
  value = dict(cell.bindings).get(INIT_FROM_BINDING)
  suffix = f"seed{cell.seed}"
  return value[:-len(suffix)] + "seed{seed}" if isinstance(value, str) and value.endswith(suffix) else None


def _key(cell: Cell) -> str:
  """Everything of a cell but its seed (repr: binding values may be dicts); an init_from run of the
  cell's own seed counts as its template."""
  template_dir = _init_from_template(cell)
  return repr((cell.kind, cell.strategy, cell.mixture, cell.axes, cell.gin_files,
               [(k, template_dir if k == INIT_FROM_BINDING and template_dir else v)
                for k, v in cell.bindings if k != SEED_BINDING]))


def _source_key(cell: Cell) -> str | None:
  """For cells started from a run (mtl-transfer targets): everything but the seed, the starting run and the
  'source' axis naming it; None for the others. Cells with one key can share a trainer as lanes."""
  bindings = dict(cell.bindings)
  if INIT_FROM_BINDING not in bindings:
    return None
  return repr((cell.kind, cell.strategy, cell.mixture, [a for a in cell.axes if a[0] != "source"], cell.gin_files,
               [(k, v) for k, v in cell.bindings if k not in (SEED_BINDING, INIT_FROM_BINDING)]))


def groups(cells: Sequence[Cell], k: int, sources: int = 1) -> list[list[Cell]]:
  """Cells differing only in their seed, K per group, in the grid's order of their first cell. With
  sources=S > 1, cells started from runs that differ only in that run (a target from each of several
  sources) share a group too: up to S x K lanes, ordered by starting run, then seed."""
  by_key: dict[tuple, list[Cell]] = {}
  for cell in cells:
    key = _source_key(cell) if sources > 1 else None
    by_key.setdefault(("sources", key) if key is not None else ("seeds", _key(cell)), []).append(cell)
  out = []
  for (mode, _), same in by_key.items():
    if mode == "sources":
      same = sorted(same, key=lambda c: (dict(c.bindings)[INIT_FROM_BINDING], c.seed))
      out += [same[i:i + k * sources] for i in range(0, len(same), k * sources)]
    else:
      out += [same[i:i + k] for i in range(0, len(same), k)]
  return out


def template(cell: Cell) -> str:
  """The cell id with its seed as '{seed}' (grid.make_cell ends every id with 'seed<S>')."""
  suffix = f"seed{cell.seed}"
  assert cell.cell_id.endswith(suffix), cell.cell_id
  return cell.cell_id[:-len(suffix)] + "seed{seed}"


def pointer_line(seeds: Sequence[int], log_path) -> str:
  """What a grouped cell's own train.log gets: where its trainer logs (compare/collect.py follows it)."""
  return (f"\n===== mtl-compare {datetime.datetime.now().isoformat(timespec='seconds')}: runs with seeds "
          f"{list(seeds)} in one step; its log: {log_path}\n")


def _lanes_argv(group: Sequence[Cell], exp_dir, binary: Sequence[str]) -> list[str]:
  """A group of several starting runs: each lane's MODEL_DIR and run named (lanes.*, run/seeds_in_step.py)."""
  first = group[0]
  args = [a for a in first.argv(binary, runner.cell_dir(exp_dir, first))
          if not a.startswith((f"--gin.{SEED_BINDING}=", f"--gin.{INIT_FROM_BINDING}="))]
  return [*args, binding_arg(INIT_FROM_BINDING, dict(first.bindings)[INIT_FROM_BINDING]),
          binding_arg(SEEDS_BINDING, [c.seed for c in group]),
          binding_arg(LANE_DIRS_BINDING, [str(runner.cell_dir(exp_dir, c)) for c in group]),
          binding_arg(LANE_SOURCES_BINDING, [dict(c.bindings)[INIT_FROM_BINDING] for c in group])]


def group_argv(group: Sequence[Cell], exp_dir, binary: Sequence[str]) -> list[str]:
  """The one trainer command of a group: the first cell's, MODEL_DIR a '{seed}' template, all its seeds
  (lanes.* naming each lane's directory and starting run when the group spans several of them)."""
  first = group[0]
  if len({_key(c) for c in group}) > 1 or len({c.seed for c in group}) < len(group):
    return _lanes_argv(group, exp_dir, binary)
  model_dir = runner.cell_dir(exp_dir, first).with_name(template(first))
  args = [a for a in first.argv(binary, model_dir) if not a.startswith(f"--gin.{SEED_BINDING}=")]
  if (source := _init_from_template(first)) is not None:  # each lane its own seed's source
    args = [a for a in args if not a.startswith(f"--gin.{INIT_FROM_BINDING}=")] + [binding_arg(INIT_FROM_BINDING, source)]
  return [*args, binding_arg(SEEDS_BINDING, [c.seed for c in group])]


def _run_group(group, exp_dir, binary, env, launcher, echo) -> list[runner.Outcome]:
  """Launches the unfinished cells of one group as one trainer; one Outcome per cell."""
  outcomes, held, tokens = [], [], []
  try:
    for cell in group:
      model_dir = runner.cell_dir(exp_dir, cell)
      try:
        tokens.append(dir_lock.hold_for_launch(model_dir))
        held.append(cell)
      except dir_lock.LockedError:
        owner = dir_lock.live_owner(model_dir)
        outcomes.append(runner.Outcome(cell.cell_id, "running", error=f"in use by {dir_lock.describe(owner or {})}"))
    todo, problems = [], {}
    for cell in held:
      model_dir = runner.cell_dir(exp_dir, cell)
      if runner.is_done(cell, model_dir):
        outcomes.append(runner.Outcome(cell.cell_id, "skipped"))
        continue
      problems[cell.cell_id] = runner.set_aside_damaged(model_dir) or ""
      if problems[cell.cell_id]:
        echo(f"mtl-compare: damaged: {problems[cell.cell_id]}")
      todo.append(cell)
    if not todo:
      return outcomes
    first_dir = runner.cell_dir(exp_dir, todo[0])
    # one cell left (K does not divide the seeds, or the others are finished): its own command, as without K
    argv = group_argv(todo, exp_dir, binary) if len(todo) > 1 else [*binary, *runner.cell_args(todo[0], first_dir)]
    log_path = first_dir / runner.LOG_FILE
    for cell in todo[1:]:  # one trainer, one log: the others point to it
      with open(runner.cell_dir(exp_dir, cell) / runner.LOG_FILE, "a") as log:
        log.write(pointer_line([c.seed for c in todo], log_path))
    start = time.time()
    rc = launcher(argv, log_path, {**env, dir_lock.TOKEN_ENV: ",".join(tokens)})
    wall = time.time() - start
    for cell in todo:
      model_dir = runner.cell_dir(exp_dir, cell)
      record = runner.read_record(model_dir)
      record["args"] = runner.cell_args(cell, model_dir)  # the cell's own: found finished with or without K
      record.setdefault("attempts", []).append(
          {"started": datetime.datetime.fromtimestamp(start).isoformat(timespec="seconds"),
           "wall_s": round(wall, 3), "returncode": rc,
           **({"seeds_in_one_step": [c.seed for c in todo]} if len(todo) > 1 else {})})
      runner._write_record(model_dir, record)
      if rc != 0:
        outcomes.append(runner.Outcome(cell.cell_id, "failed", rc, wall, runner._last_error(log_path),
                                       problems[cell.cell_id]))
      else:
        outcomes.append(runner.Outcome(cell.cell_id, "ran" if runner.is_done(cell, model_dir) else "incomplete",
                                       rc, wall, problem=problems[cell.cell_id]))
    return outcomes
  finally:
    for cell in held:
      dir_lock.release_launch(runner.cell_dir(exp_dir, cell))


def run_cells(cells: Sequence[Cell], exp_dir, binary: Sequence[str], parallel: int = 1, env=None,
              launcher: runner.Launcher = runner.subprocess_launcher, echo: Callable[[str], None] = print,
              wait: bool = False, seeds_per_step: int = 1, sources_per_step: int = 1) -> list[runner.Outcome]:
  """runner.run_cells, with K seeds of a cell per launch when seeds_per_step=K > 1 (and, for cells started
  from runs, those of up to S starting runs when sources_per_step=S > 1)."""
  if seeds_per_step <= 1 and sources_per_step <= 1:
    return runner.run_cells(cells, exp_dir, binary, parallel, env=env, launcher=launcher, echo=echo, wait=wait)
  env = runner.cells_env(env, exp_dir)  # the grid caches, as for one cell per launch
  todo = [c for c in cells if not runner.check(c, runner.cell_dir(exp_dir, c)).finished]
  planned = groups(todo, seeds_per_step, sources_per_step)
  lanes = f"{seeds_per_step} seeds" + (f" x {sources_per_step} sources" if sources_per_step > 1 else "")
  echo(f"mtl-compare: {len(cells)} cells: {len(cells) - len(todo)} finished, {len(todo)} to run as "
       f"{len(planned)} launches of up to {lanes} in one step ({parallel} at a time)")
  outcomes = {c.cell_id: runner.Outcome(c.cell_id, "skipped") for c in cells if c not in todo}
  with runner.forward_signals() as signals:
    def one(group):
      if signals.signum is None:  # after a signal nothing new starts
        for outcome in _run_group(group, exp_dir, binary, env, launcher, echo):
          outcomes[outcome.cell_id] = outcome
          echo(f"mtl-compare: {outcome.status} {outcome.cell_id} in {outcome.wall_s:.1f}s"
               + (f": {outcome.error}" if outcome.error else ""))
    runner.for_each(planned, one, parallel)
    if signals.signum is not None:
      raise runner.Interrupted(signals.signum)
  if wait and any(o.status == "running" for o in outcomes.values()):  # cells another trainer held: as the runner does
    return runner.run_cells(cells, exp_dir, binary, parallel, env=env, launcher=launcher, echo=echo, wait=True)
  return [outcomes[c.cell_id] for c in cells if c.cell_id in outcomes]
