"""mtl-transfer: the source x target transfer grid (intermediate training, then fine-tuning) and its report.

  python -m mtl_jax.transfer --experiment=gin/experiments/transfer_tiny.gin [--exp_dir=DIR] [--parallel=2]
      [--gin.transfer.seeds=[0,1,2]] [--dry_run | --report_only] [--executor=submitit ...]

Stage 1 trains each source (task or mixture) once per seed under EXP_DIR/runs/source__*, and beside
it each target's baseline `none` (no stage 1, so it need not wait); stage 2 starts every target from
each source's trunk (`init_from`) under EXP_DIR/runs/target__*, for every data regime. Rerunning the same command skips
finished cells and resumes unfinished ones; a target whose source has not finished waits for the
next run. Writes EXP_DIR/{transfer_matrix.csv, transfer_matrix.json, report.md, plots/gain_<regime>.png}.
Exit status: 0 every cell finished, 1 some failed or unfinished (the report covers the rest), 2 bad
configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from mtl_jax import gin_args
from mtl_jax.compare import early_stop
from mtl_jax.compare import cli as compare_cli, jobs, runner, seed_groups
from mtl_jax.transfer import grid, matrix, report


def parse_args(argv):
  p = argparse.ArgumentParser(prog="mtl-transfer", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--experiment", action="append", default=[], help="experiment gin file (repeatable)")
  p.add_argument("--exp_dir", help="experiment directory (default: transfer.exp_dir)")
  p.add_argument("--parallel", type=int, help="cells run at once (default: transfer.parallel, 1)")
  p.add_argument("--seeds_per_step", type=int,
                 help="K: a cell's seeds train K at a time in one trainer, one vmapped step (same cells and "
                      "results; default: transfer.seeds_per_step, 1). Sources, baselines and targets group; each "
                      "seed of a target starts from that seed's own source run")
  p.add_argument("--sources_per_step", type=int,
                 help="S: stage 2 trains a target from S sources (x the K seeds) in one trainer, one vmapped "
                      "step, each lane from its own source run (same cells and results; default: "
                      "transfer.sources_per_step, 1): fewer start-ups, compilations and evaluation launches; memory "
                      "grows with the lanes (~1.2 GB per MiniLM lane)")
  p.add_argument("--dry_run", action="store_true", help="list the cells and their commands; run nothing")
  p.add_argument("--report_only", action="store_true", help="only aggregate what is in EXP_DIR")
  p.add_argument("--wait", action="store_true",
                 help="wait for cells another runner's trainer holds, then run what it left unfinished")
  jobs.add_flags(p)
  args, rest = p.parse_known_args(argv)
  bindings = gin_args.bindings(rest, p.error, example="--gin.transfer.seeds=[0,1]")
  if not args.experiment and not bindings:
    p.error("no --experiment given; start from --experiment=gin/experiments/transfer_tiny.gin")
  return args, bindings


def write_outputs(exp: grid.TransferExperiment, exp_dir: pathlib.Path, cells, echo=print) -> list[str]:
  """transfer_matrix.csv / .json, report.md, heatmaps; returns the unfinished stage-2 cells."""
  per_cell, rows = matrix.rows(cells, exp_dir)
  done = {c["cell_id"] for c in per_cell}
  unfinished = [c.cell_id for c in cells if c.cell_id not in done]
  spec = exp.to_json()
  matrix.write_csv(exp_dir / "transfer_matrix.csv", rows)
  matrix.write_json(exp_dir / "transfer_matrix.json", spec, per_cell, rows, unfinished)
  figures = [f for regime in exp.regimes
             if (f := report.heatmap(rows, regime, exp_dir / "plots" / f"gain_{grid.slug(regime)}.png"))]
  (exp_dir / "report.md").write_text(report.markdown(spec, rows, figures, unfinished, exp_dir))
  for r in rows:
    if r["source"] != grid.NONE:
      echo(f"  {r['regime']:8s} {r['source']:>24s} -> {r['target']:20s} {r['metric']}={r['mean']:.4f} "
           f"gain={report.gain_text(r)} n={r['n']}")
  echo(f"mtl-transfer: wrote {exp_dir / 'report.md'}, transfer_matrix.csv, transfer_matrix.json and "
       f"{len(figures)} heatmaps under {exp_dir / 'plots'}")
  return unfinished


def main(argv=None, launcher=None, env=None, echo=print) -> int:
  """The CLI; `launcher` / `env` are for tests (see compare.runner.run_cells)."""
  args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    exp = grid.load(args.experiment, bindings, exp_dir=args.exp_dir, parallel=args.parallel,
                    seeds_per_step=args.seeds_per_step, sources_per_step=args.sources_per_step)
    exp.validate()
    if not exp.exp_dir:
      raise ValueError("no experiment directory: pass --exp_dir=DIR (or set transfer.exp_dir)")
  except (ValueError, TypeError, KeyError, OSError) as e:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f"mtl-transfer: error: {text}", file=sys.stderr, flush=True)
    return 2
  exp_dir = pathlib.Path(exp.exp_dir).absolute()
  sources = exp.source_cells()
  targets = exp.target_cells(lambda cell: runner.cell_dir(exp_dir, cell))
  source_of = {c.cell_id: exp.source_cell(c.axes_dict["source"], c.seed) for c in targets
               if c.axes_dict["source"] != grid.NONE}
  if args.dry_run:
    echo(compare_cli.dry_run([*sources, *targets], exp_dir, exp.command(), "mtl-transfer", echo)
         + f" ({len(sources)} source cells, {len(targets)} target cells)")
    return 0
  exp_dir.mkdir(parents=True, exist_ok=True)
  (exp_dir / "experiment.json").write_text(json.dumps(
      {"experiment": exp.to_json(), "cells": [c.cell_id for c in [*sources, *targets]]}, indent=1))
  if not args.report_only:
    run_env = dict(os.environ if env is None else env)
    run_env.update({str(k): str(v) for k, v in exp.env.items()})
    launch = launcher or jobs.launcher_from_args(args, exp_dir)
    launch = guard = early_stop.Guard(launch)  # the first cells fail with one config error: stop
    try:
      # the 'none' targets need no source: they fill stage 1's idle parallel slots instead of waiting for it
      baseline = [c for c in targets if c.cell_id not in source_of]
      echo("mtl-transfer: stage 1 (intermediate training, and the targets' 'none' baseline beside it)")
      seed_groups.run_cells([*sources, *baseline], exp_dir, exp.command(), exp.parallel, env=run_env, launcher=launch,
                            echo=echo, wait=args.wait, seeds_per_step=exp.seeds_per_step)
      # a source counts only when finished: its final checkpoint committed (never an older one)
      unfinished_source = {c.cell_id: runner.check(c, runner.cell_dir(exp_dir, c)) for c in sources}
      unfinished_source = {k: v for k, v in unfinished_source.items() if not v.finished}
      ready = [c for c in targets if c.cell_id in source_of and source_of[c.cell_id].cell_id not in unfinished_source]
      for cell_id, state in unfinished_source.items():
        echo(f"mtl-transfer: source {cell_id} is not finished"
             + (f" ({state.problem})" if state.problem else "") + "; its targets wait: rerun the same command")
      if len(ready) < len(source_of):
        echo(f"mtl-transfer: {len(source_of) - len(ready)} target cells wait for a source that did not finish")
      echo("mtl-transfer: stage 2 (targets, from each source)")
      # a target's source differs per seed: seed_groups binds init_from.model_dir as a '{seed}' template
      seed_groups.run_cells(ready, exp_dir, exp.command(), exp.parallel, env=run_env, launcher=launch,
                            echo=echo, wait=args.wait, seeds_per_step=exp.seeds_per_step,
                            sources_per_step=exp.sources_per_step)
    except KeyboardInterrupt as e:
      echo("mtl-transfer: interrupted; running cells saved a checkpoint. Rerun the same command to resume "
           "(finished cells are skipped)")
      return getattr(e, "returncode", 130)
  if not args.report_only and (error := guard.error()):  # not "rerun to resume": it would fail the same way
    print(f"mtl-transfer: error: {error}", file=sys.stderr, flush=True)
    return 2
  unfinished = write_outputs(exp, exp_dir, targets, echo)
  unfinished_sources = [c.cell_id for c in sources if not runner.is_done(c, runner.cell_dir(exp_dir, c))]
  if unfinished or unfinished_sources:
    echo(f"mtl-transfer: {len(unfinished) + len(unfinished_sources)} cells not finished; rerun the same "
         "command to resume them")
    return 1
  return 0
