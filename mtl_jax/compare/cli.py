"""mtl-compare: run a grid of sharing strategies (plus single-task baselines) and report.

  python -m mtl_jax.compare --experiment=gin/experiments/relatedness_sweep.gin --exp_dir=/tmp/sweep
  python -m mtl_jax.compare --gin_file=gin/runs/quickstart.gin --gin_file=gin/models/tiny.gin \\
      --strategies=hard,sluice --mixtures=quickstart --seeds=0,1 --binding=TRAIN_STEPS=200 \\
      --exp_dir=/tmp/cmp [--parallel=2] [--dry_run | --report_only] [--executor=submitit ...]

Experiment gin files bind `experiment.<field>` (see mtl_jax/compare/grid.py); flags and
`--gin.experiment.<field>=VALUE` override them. Rerunning the same command skips finished
cells and resumes unfinished ones. Writes EXP_DIR/{results.csv, results.json, report.md,
plots/*.png}; each cell's MODEL_DIR is EXP_DIR/runs/<cell_id>/.
Exit status: 0 all cells finished, 1 some failed or unfinished (the report covers the rest),
2 bad configuration.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import pathlib
import sys

from mtl_jax import gin_args
from mtl_jax.compare import early_stop, grid, jobs, merge_arms, runner  # collect / report (JAX, scipy, matplotlib): after the checks
from mtl_jax.compare import seed_groups  # --seeds_per_step: K seeds of a cell per launch


def _value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _csv(text: str) -> list[str]:
  return [x.strip() for x in text.split(",") if x.strip()]


def _key_value(text: str) -> tuple[str, str]:
  if "=" not in text:
    raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
  key, value = text.split("=", 1)
  return key.strip(), value


def parse_args(argv):
  p = argparse.ArgumentParser(prog="mtl-compare", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--experiment", action="append", default=[], help="experiment gin file (repeatable)")
  p.add_argument("--exp_dir", help="experiment directory (default: experiment.exp_dir)")
  p.add_argument("--name", help="experiment name")
  p.add_argument("--gin_file", action="append", default=None,
                 help="gin file every cell starts from (repeatable; replaces experiment.gin_files)")
  p.add_argument("--strategies", type=_csv, help="comma-separated sharing strategies (gin/sharing/<name>.gin)")
  p.add_argument("--mixtures", type=_csv, help="comma-separated mixtures")
  p.add_argument("--seeds", type=lambda s: [int(x) for x in _csv(s)], help="comma-separated seeds")
  p.add_argument("--binding", action="append", type=_key_value, default=[],
                 help="KEY=VALUE passed as --gin.KEY=VALUE to every cell (repeatable; adds to experiment.bindings)")
  p.add_argument("--axis", action="append", type=_key_value, default=[],
                 help="KEY=V1,V2: an extra grid axis (a gin binding, or gin files when the values end in .gin)")
  p.add_argument("--seeds_per_step", type=int,
                 help="K: a cell's seeds train K at a time in one trainer, one vmapped step (same cells and results)")
  p.add_argument("--no_baselines", action="store_true", help="skip the single-task baselines")
  p.add_argument("--parallel", type=int, help="cells run at once (default: experiment.parallel, 1)")
  p.add_argument("--dry_run", action="store_true", help="list the cells and their commands; run nothing")
  p.add_argument("--report_only", action="store_true", help="only aggregate what is in EXP_DIR")
  p.add_argument("--wait", action="store_true",
                 help="wait for cells another runner's trainer holds, then run what it left unfinished")
  jobs.add_flags(p)
  args, rest = p.parse_known_args(argv)
  bindings = gin_args.bindings(rest, p.error, example="--gin.experiment.seeds=[0,1]")
  return p, args, bindings


def build_experiment(args, bindings) -> grid.Experiment:
  spec = grid.load(args.experiment, bindings)
  overrides = {"name": args.name, "exp_dir": args.exp_dir, "strategies": args.strategies,
               "mixtures": args.mixtures, "seeds": args.seeds, "parallel": args.parallel, "seeds_per_step": args.seeds_per_step,
               "gin_files": args.gin_file}
  if args.binding:
    overrides["bindings"] = {**spec.bindings, **{k: _value(v) for k, v in args.binding}}
  if args.axis:
    overrides["axes"] = {**spec.axes, **{k: [_value(v) for v in _csv(vs)] for k, vs in args.axis}}
  if args.no_baselines:
    overrides["baselines"] = False
  import dataclasses
  return dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v is not None})


def _print_summary(result, echo) -> None:
  from mtl_jax.compare import report
  for g in result["groups"]:
    where = g["mixture"] + "".join(f" {k}={v}" for k, v in g["axes"].items())
    dm = g["delta_m"]
    dm_text = "–" if math.isnan(dm["mean"]) else f"{100 * dm['mean']:+.2f}%"
    echo(f"  {where:40s} {g['strategy']:14s} average={report.pm(g['average']['mean'], g['average']['std'])} "
         f"delta_m={dm_text} seeds={len(g['seeds'])}")


def dry_run(cells, exp_dir: pathlib.Path, command, prog: str, echo=print) -> str:
  """Echoes 'done|todo ARGV' per cell (with any damaged file's line); returns the count line."""
  todo = 0
  for cell in cells:
    state = runner.check(cell, runner.cell_dir(exp_dir, cell))
    todo += not state.finished
    echo(("done " if state.finished else "todo ") + " ".join(cell.argv(command, runner.cell_dir(exp_dir, cell))))
    if state.problem:
      echo(f"  damaged: {state.problem}")
  return f"{prog}: {len(cells)} cells, {todo} to run"


def main(argv=None, launcher=None, env=None, echo=print) -> int:
  """The CLI; `launcher` / `env` are for tests (see runner.run_cells)."""
  parser, args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    exp = build_experiment(args, bindings)
    if not exp.exp_dir:
      raise ValueError("no experiment directory: pass --exp_dir=DIR (or set experiment.exp_dir)")
    cells = exp.cells()
    arms = merge_arms.plan(exp, cells)  # experiment.merge: arms merged from the single-task cells
  except (ValueError, TypeError, KeyError, OSError) as e:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f"mtl-compare: error: {text}", file=sys.stderr, flush=True)
    return 2
  exp_dir = pathlib.Path(exp.exp_dir).absolute()  # MODEL_DIRs (and the skip check) independent of cwd
  if args.dry_run:
    echo(dry_run(cells, exp_dir, exp.command(), "mtl-compare", echo))
    for arm in arms:
      echo(("done " if merge_arms.is_done(arm, exp_dir) else "todo ") + " ".join(
          merge_arms.command(arm, exp_dir, runner.cell_dir(exp_dir, arm.cell), exp.merge_grid)))
    return 0
  exp_dir.mkdir(parents=True, exist_ok=True)
  spec = exp.to_json()
  (exp_dir / "experiment.json").write_text(json.dumps(
      {"experiment": spec, "cells": [c.cell_id for c in cells]}, indent=1))
  if not args.report_only:
    run_env = dict(os.environ if env is None else env)
    run_env.update({str(k): str(v) for k, v in exp.env.items()})
    launcher = guard = early_stop.Guard(launcher or jobs.launcher_from_args(args, exp_dir))  # one config error: stop
    try:
      seed_groups.run_cells(cells, exp_dir, exp.command(), exp.parallel, env=run_env, echo=echo, wait=args.wait,
                            launcher=launcher or jobs.launcher_from_args(args, exp_dir), seeds_per_step=exp.seeds_per_step)
      merge_arms.run(arms, exp_dir, exp.merge_grid, run_env, guard.launcher, echo)  # the cells' launcher, unguarded
    except KeyboardInterrupt as e:
      echo("mtl-compare: interrupted; running cells saved a checkpoint. Rerun the same command to resume "
           "(finished cells are skipped)")
      return getattr(e, "returncode", 130)
  if not args.report_only and (error := guard.error()):  # not "rerun to resume": it would fail the same way
    print(f"mtl-compare: error: {error}", file=sys.stderr, flush=True)
    return 2
  from mtl_jax.compare import collect, report  # here, so a bad configuration fails in about a second
  collected = collect.collect([*cells, *(a.cell for a in arms)], exp_dir)
  out = report.write_all(exp_dir, spec, collected, [*exp.strategies, *map(merge_arms.label, exp.merge)],
                         exp.mtl_only_axes)
  _print_summary(out["result"], echo)
  echo(f"mtl-compare: wrote {exp_dir / 'report.md'}, results.csv, results.json and "
       f"{len(out['files']) - 3} plots under {exp_dir / 'plots'}")
  unfinished = [c["cell_id"] for c in collected if c["status"] != "done"]
  if unfinished:
    echo(f"mtl-compare: {len(unfinished)} cells not finished: {', '.join(unfinished[:8])}"
         + (" ..." if len(unfinished) > 8 else "") + "; rerun the same command to resume them")
    return 1
  return 0
