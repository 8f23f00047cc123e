"""Where a grid's cells run: local child processes (default) or jobs on submitit (SLURM).

mtl-compare and mtl-transfer hand each cell to a `runner.Launcher` (argv, log file, env) -> exit
code. `submitit_launcher` submits the same child-process launch as one submitit job per cell and
waits for it, so `--parallel=N` cells are queued at once, a finished cell is still skipped on a
rerun, and an unfinished one resumes from its checkpoints. On a cluster:

  python -m mtl_jax.compare --experiment=E.gin --executor=submitit --slurm_partition=gpu \\
      --job_param=gpus_per_node=1 --job_param=timeout_min=240 --parallel=32

(the jobs run the same interpreter path, in the same working directory: the repo and its
environment must be on a file system the nodes share). `--submitit_cluster=local` runs the jobs
as local processes through submitit (what the tests use); `debug` runs them in this process.
Job scripts and submitit's own logs go to EXP_DIR/submitit/; each cell's output still goes to
its MODEL_DIR/train.log.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Mapping, Sequence

from mtl_jax.compare import runner

EXECUTORS = ("local", "submitit")


def _run_cell(argv: Sequence[str], log_path: str, env: Mapping[str, str]) -> int:
  """The job's body (top level: submitit pickles it)."""
  return runner.subprocess_launcher(argv, pathlib.Path(log_path), env)


def submitit_launcher(folder, cluster: str | None = None, parameters: Mapping | None = None) -> runner.Launcher:
  """A Launcher that runs each cell as one submitit job (AutoExecutor: SLURM when available)."""
  try:
    import submitit
  except ImportError:
    raise ValueError("--executor=submitit needs the submitit package: pip install submitit") from None
  folder = pathlib.Path(folder)

  def launch(argv, log_path, env) -> int:
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    executor.update_parameters(name=pathlib.Path(log_path).parent.name, **dict(parameters or {}))
    job = executor.submit(_run_cell, list(argv), str(log_path), dict(env))
    try:
      return int(job.result())
    except Exception as e:  # the job itself failed (node lost, timeout): the cell is 'failed'
      with open(log_path, "a") as log:
        log.write(f"\nsubmitit job {job.job_id} failed: {str(e).strip().splitlines()[-1] if str(e).strip() else e}\n")
      return 1

  return launch


def job_parameters(pairs: Sequence[tuple[str, str]], partition: str | None = None) -> dict:
  """--job_param KEY=VALUE pairs (values as Python literals where they parse) + the partition."""
  out = {}
  for key, text in pairs:
    try:
      out[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      out[key] = text
  if partition:
    out["slurm_partition"] = partition
  return out


def add_flags(parser) -> None:
  parser.add_argument("--executor", choices=EXECUTORS, default="local",
                      help="where cells run: local child processes, or one submitit job per cell")
  parser.add_argument("--submitit_cluster", default=None,
                      help="submitit cluster: None picks SLURM when present; 'local' or 'debug' for testing")
  parser.add_argument("--slurm_partition", default=None, help="SLURM partition for --executor=submitit")
  parser.add_argument("--job_param", action="append", default=[], type=_key_value,
                      help="KEY=VALUE submitit parameter (timeout_min, gpus_per_node, cpus_per_task, mem_gb, "
                           "slurm_*), repeatable")


def _key_value(text: str) -> tuple[str, str]:
  import argparse
  if "=" not in text:
    raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
  key, value = text.split("=", 1)
  return key.strip(), value


def launcher_from_args(args, exp_dir: pathlib.Path) -> runner.Launcher:
  if args.executor == "local":
    return runner.subprocess_launcher
  return submitit_launcher(exp_dir / "submitit", args.submitit_cluster,
                           job_parameters(args.job_param, args.slurm_partition))
