"""mtl-merge: single-task runs from one starting point -> one multi-task MODEL_DIR (merged trunk, own heads).

  python -m mtl_jax.merge --runs RUN_A RUN_B ... --out MERGED --gin_file=gin/merge/ties.gin
  python -m mtl_jax.merge --runs RUN_A RUN_B ... --out MERGED --method ties
      [--grid density=0.1,0.2 --grid scaling=0.6,1.0] [--examples 256] [--seed 0] [--no_test]

Methods: average, task_arithmetic (scaling = lambda), ties (density = top-k fraction kept, scaling),
dare_linear / dare_ties (drop_rate = p, scaling), fisher, regmean (alpha: off-diagonal Gram scaling).
gin/merge/<method>.gin binds merge.method / merge.grid (mtl_jax/merge/settings.py); flags override it.
Every point of the grid (defaults in mtl_jax/merge/<method>.py, merge.grid / --grid replace axes) is merged
and scored on validation; the best is written as an ordinary hard-sharing MODEL_DIR (config.gin,
run_spec.json with a 'merge' entry, checkpoint, results.json = the pick's validation record + its test keys
as every run's (run/held_out.py), merge.json = the grid) that mtl-predict, mtl-export, init_from and mtl-train (which resumes it and evaluates)
read like any run. --examples: training examples per task for Fisher / RegMean statistics.
Runs must be finished hard-sharing runs, or single-task lora runs (merged by their low-rank update W + alpha/r A B),
from one pretrained checkpoint / init_from source (run_spec.json). Single-task adapters runs merge into an adapters
run: one merged adapter (linear / TIES methods, mtl_jax/merge/adapters.py) on the frozen trunk, each task's head.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys


def parse_grid(items) -> dict:
  grid = {}
  for item in items or ():
    name, sep, values = item.partition("=")
    try:
      if not sep or not name or not values:
        raise ValueError
      grid[name.strip()] = [float(v) for v in values.split(",")]
    except ValueError:
      raise ValueError(f"--grid {item!r}: write NAME=V1,V2 (e.g. scaling=0.3,0.5)") from None
  return grid


def run(args) -> dict:
  from mtl_jax.merge import base, select, settings as settings_lib, sources, target as target_lib
  from mtl_jax.predict import config_trust
  bound = settings_lib.from_gin(args.gin_file)
  if not (args.method or bound.method):
    raise ValueError("no merge method: pass --method NAME or --gin_file=gin/merge/<method>.gin; methods: "
                     + ", ".join(base.names()))
  method = base.get(args.method or bound.method)
  grid = {**(bound.grid if (args.method or bound.method) == bound.method else {}), **parse_grid(args.grid)}
  args.examples = bound.examples if args.examples is None else args.examples
  if args.examples < 1:
    raise ValueError(f"--examples must be >= 1, got {args.examples}")
  args.seed = bound.seed if args.seed is None else args.seed
  select.candidates(method, grid)  # a bad --grid before any work
  target_lib.check_out_dir(args.out)
  for run_dir in args.runs:  # the merged run parses their config.gin, whose imports run: this project's only
    config = pathlib.Path(run_dir) / "config.gin"
    if config.is_file():
      config_trust.check(config, args.trust_config)
  runs = sources.open_runs(args.runs)
  if runs[0].sharing == "adapters":
    from mtl_jax.merge import adapters
    adapters.check_method(method)  # before any work
  target = target_lib.build(runs, args.out)
  best = select.pick(target, method, grid, seed=args.seed, examples=args.examples, test=not args.no_test)
  record = {"method": method.name, "hparams": best["hparams"], "seed": args.seed, "grid": best["grid"],
            "sources": [r.record() for r in runs], "statistics_examples": args.examples if method.needs else None,
            "validation_average": best["validation"]["average"],
            "test_average": best["validation"].get("test_average"),
            "test_note": None if best["validation"].get("test") else "no task has a test split (or --no_test)"}
  target.write(best["params"], record, best["validation"])
  line = f"mtl-merge: picked {method.name} {select._fmt(best['hparams'])}: validation average=" \
         f"{best['validation']['average']:.4f}"
  if best["validation"].get("test"):
    line += f", test average={best['validation']['test_average']:.4f} " + " ".join(
        f"{t}={r['headline']:.3f}" for t, r in best["validation"]["test"].items())
  print(line, flush=True)
  print(f"mtl-merge: wrote {target.out_dir} (predict: python -m mtl_jax.predict --model_dir={target.out_dir} "
        "--input=texts.txt)", flush=True)
  return record


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="mtl-merge", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--runs", nargs="+", required=True, help="the single-task MODEL_DIRs to merge")
  parser.add_argument("--out", required=True, help="the new MODEL_DIR (must not exist, or be empty)")
  parser.add_argument("--method", help="average | task_arithmetic | ties | dare_linear | dare_ties | fisher | regmean")
  parser.add_argument("--gin_file", action="append", default=[], help="gin/merge/<method>.gin: merge.* settings")
  parser.add_argument("--grid", action="append", help="NAME=V1,V2: replace one hyperparameter axis of the grid")
  parser.add_argument("--examples", type=int, help="training examples per task (Fisher / RegMean; default 256)")
  parser.add_argument("--seed", type=int, help="DARE's drop draws (default 0)")
  parser.add_argument("--no_test", action="store_true", help="do not score the pick on the test split")
  parser.add_argument("--trust_config", action="store_true",
                      help="read runs whose config.gin imports modules outside mtl_jax / tasks")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")  # TF is only the input pipeline
  except RuntimeError:
    pass
  from mtl_jax import train
  return train.report_errors("mtl-merge", lambda: run(args))


if __name__ == "__main__":
  sys.exit(main())
