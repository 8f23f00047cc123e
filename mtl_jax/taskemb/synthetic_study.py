"""One command for the planted-relations study (#31 part 2): the transfer grid, then every method scored.

  python -m mtl_jax.taskemb.synthetic_study --out_dir=/tmp/taskemb_synthetic [--parallel=2]
      [--gin.transfer.seeds=[0]] [--methods=taskemb,textemb,oracle]

1. mtl-transfer on gin/experiments/taskemb_synthetic.gin (10 targets x 10 candidates x 3 seeds, regime
   n100; resumable: rerunning skips finished cells), exp_dir OUT_DIR/transfer.
2. OUT_DIR/oracle.csv: the catalogue's planted overlap (mtl_jax/data/synthetic_catalogue.py).
3. mtl-taskemb on the grid's runs, OUT_DIR/taskemb: sources embedded from their stage-1 runs, targets
   from their own 100-example regime (the 'none' cells and the subset they trained on), TextEmb from the
   first source's stage-1 trunk (the catalogue has no pretrained encoder), oracle, DataSize, Random;
   report.md with bootstrap CIs over targets and paired tests. Affinity needs its own run
   (gin/taskemb/affinity_syncat.gin: equal rates, Z every step): pass --affinity_run=DIR per seed.
Exit status: mtl-transfer's if the grid did not finish (1 / 2), else mtl-taskemb's.
"""

from __future__ import annotations

import argparse
import importlib.util  # noqa: F401  gin-config resource_reader uses it without importing it
import pathlib
import sys

EXPERIMENT = "gin/experiments/taskemb_synthetic.gin"


def parse_args(argv):
  p = argparse.ArgumentParser(prog="mtl-taskemb-synthetic", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out_dir", required=True)
  p.add_argument("--experiment", action="append", default=None, help=f"transfer experiment (default {EXPERIMENT})")
  p.add_argument("--parallel", type=int, default=None)
  p.add_argument("--methods", default="taskemb,textemb,oracle")
  p.add_argument("--affinity_run", action="append", default=[])
  p.add_argument("--max_examples", type=int, default=None, help="Fisher cap per task (default: all)")
  p.add_argument("--write_oracle", help="only write the planted-overlap CSV to this path and exit")
  return p.parse_known_args(argv)  # the rest (--gin.transfer.X=Y) goes to mtl-transfer


def write_oracle(path: pathlib.Path, names=None) -> pathlib.Path:
  from mtl_jax.data import synthetic_catalogue as cat
  from mtl_jax.taskemb import similarity
  names = list(names or cat.task_names())
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  similarity.write_csv(path, names, cat.planted_overlap(names))
  return path


def main(argv=None, launcher=None) -> int:
  args, rest = parse_args(sys.argv[1:] if argv is None else argv)
  if args.write_oracle:
    print(f"mtl-taskemb-synthetic: wrote {write_oracle(pathlib.Path(args.write_oracle))}")
    return 0
  from mtl_jax.taskemb import cli as taskemb_cli
  from mtl_jax.transfer import cli as transfer_cli, grid
  out = pathlib.Path(args.out_dir).absolute()
  experiment = args.experiment or [EXPERIMENT]
  flags = [*(f"--experiment={e}" for e in experiment), f"--exp_dir={out / 'transfer'}", *rest]
  if args.parallel:
    flags.append(f"--parallel={args.parallel}")
  code = transfer_cli.main(flags, launcher=launcher)
  if code != 0:
    print(f"mtl-taskemb-synthetic: the transfer grid did not finish (exit {code}); rerun the same command to "
          "resume it", file=sys.stderr)
    return code
  from mtl_jax import gin_args
  exp = grid.load(experiment, gin_args.bindings(rest, lambda m: None))
  regime, limit = next(iter(exp.regimes.items()))
  runs = out / "transfer" / "runs"
  oracle = write_oracle(out / "oracle.csv")
  first = f"{runs}/source__{grid.slug(exp.sources[0])}__seed{exp.seeds[0]}"
  argv = [f"--tasks={','.join([*exp.sources, *exp.targets])}", f"--methods={args.methods}",
          "--task_module=tasks.synthetic_catalogue", f"--trunk=catalogue=run:{first}",
          f"--taskemb_runs={runs}/source__{{task}}__seed{{seed}}",
          f"--taskemb_target_runs={runs}/target__none__to__{{task}}__{grid.slug(regime)}__seed{{seed}}",
          f"--seeds={','.join(map(str, exp.seeds))}", f"--transfer_matrix={out / 'transfer' / 'transfer_matrix.json'}",
          f"--regime={regime}", f"--oracle={oracle}", "--max_length=32", "--k=1,3",
          f"--groups_gin_file={exp.gin_files[0]}", f"--out_dir={out / 'taskemb'}",
          *(f"--affinity_run={r}" for r in args.affinity_run)]
  if limit is not None:
    argv.append(f"--target_regime={limit}")
  if args.max_examples:
    argv.append(f"--max_examples={args.max_examples}")
  return taskemb_cli.main(argv)


if __name__ == "__main__":
  sys.exit(main())
