"""The gin train binary, t5x style:

  python -m mtl_jax.train --gin_file=gin/runs/quickstart.gin --gin.MODEL_DIR=/tmp/run \
      [--gin_file=more.gin] [--gin.TRAIN_STEPS=500] [--gin_search_path=DIR]

Multi-host: run the same command on every host, plus --distributed=auto (TPU pod
slice, SLURM, Open MPI) or --coordinator_address=HOST0:PORT --num_processes=N
--process_id=I (see mtl_jax/scale/distributed.py).

`--gin.KEY=VALUE` values that are not Python/gin literals are taken as strings, so
`--gin.MODEL_DIR=/tmp/run` needs no inner quotes.
"""

from __future__ import annotations

import importlib.util  # noqa: F401  gin-config 0.5.0 resource_reader uses it without importing it
import argparse
import os
import pathlib
import sys

import gin

from mtl_jax.scale import distributed
from mtl_jax import gin_args, gin_check, gin_values

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="mtl-train", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--gin_file", action="append", default=[], help="gin config file (repeatable)")
  parser.add_argument("--gin_search_path", action="append", default=[], help="extra gin include path")
  parser.add_argument("--no_progress", action="store_true", help="no progress bar")
  parser.add_argument("--progress", action="store_true",
                      help="progress bar even when stdout/stderr is not a terminal (default: only on a terminal)")
  distributed.add_flags(parser)
  args, rest = parser.parse_known_args(argv)
  bindings = gin_args.bindings(rest, parser.error)
  if not args.gin_file:
    parser.error("no --gin_file given; start from --gin_file=gin/runs/quickstart.gin")
  return args, bindings


def parse_gin(gin_files, bindings, search_paths=()):
  """Parses the run's gin; a missing file, unknown macro / parameter / configurable is one
  ValueError line with a "did you mean" (mtl_jax/gin_check.py)."""
  gin_check.check(gin_files, bindings, search_paths)
  gin.clear_config()  # one run per parse: nothing left over from an earlier call in-process
  for path in (*search_paths, os.getcwd(), str(REPO_ROOT)):
    gin.add_config_file_search_path(path)
  try:
    gin.parse_config_files_and_bindings(gin_files, bindings, finalize_config=False)
  except ValueError as e:
    better = gin_check.explain(e)
    if better is None:
      raise
    raise ValueError(better) from None


def show_progress(args) -> bool:
  """The bar only on a terminal (no carriage returns in logs), unless --progress / --no_progress."""
  if args.no_progress or args.progress:
    return args.progress and not args.no_progress
  return sys.stdout.isatty() and sys.stderr.isatty()


def main(argv=None) -> int:
  args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
  try:  # typo'd gin file or macro: one line in about a second, before the heavy imports below
    gin_check.check(args.gin_file, bindings, args.gin_search_path)
    gin_values.check(bindings)  # a bad literal count (--gin.TRAIN_STEPS=0) as well
  except ValueError as e:
    print(f"mtl-train: error: {one_line(e)}", file=sys.stderr, flush=True)
    return 2
  try:  # multi-host: before anything touches a JAX backend
    if distributed.initialize(distributed.config_from_args(args)):
      print(f"mtl_jax: {distributed.describe()}", flush=True)
  except (ValueError, RuntimeError) as e:
    print(f"mtl-train: error: {one_line(e)}", file=sys.stderr, flush=True)
    return 2
  from mtl_jax.run import host_runtime
  if argv is None:  # the binary: glibc keeps freed memory for the next step (run/host_runtime.py)
    host_runtime.tune_allocator()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # TF is only the input pipeline
  from mtl_jax.run import crash_site, device_oom, faults, lock, trainer, write_errors
  from mtl_jax.run import compile_cache, invocation, quiet_orbax
  quiet_orbax.install()  # orbax's routine warnings (missing metadata, a short wait for the previous save)
  try:
    parse_gin(args.gin_file, bindings, args.gin_search_path)
    compile_cache.enable()  # cells of a grid share compiled programs (run/grid_cache.py)
    if argv is None:  # the binary: collections skip the import-time heap (run/host_runtime.py)
      host_runtime.freeze_imports()
    # faults: test-only injection (MTL_JAX_FAULTS); invocation: data hashes, eval batches built once per invocation
    with faults.from_env(), write_errors.quiet(), invocation.scope():
      trainer.train(progress=show_progress(args))
  except Exception as e:  # disk full / device OOM (any type orbax or XLA raises) or a bad setting
    written = write_errors.describe(e)  # None unless a write failed
    line = written or device_oom.describe(e)
    if line is None and not isinstance(e, (ValueError, KeyError, TypeError, OSError, RuntimeError)):
      raise
    crash_site.close_progress_bar(e)
    if argv is None and written:  # the binary (not an in-process call)
      write_errors.quiet_until_exit()
    print(f"mtl-train: error: {line or one_line(e)}", file=sys.stderr, flush=True)
    return 2
  finally:
    lock.release_all()
  return 0


def one_line(error: BaseException) -> str:
  """The error's own message, without gin's 'In call to configurable' context lines."""
  text = str(error).strip() or type(error).__name__
  return text.splitlines()[0]


def report_errors(prog: str, run, errors=(ValueError, KeyError, OSError)) -> int:
  """A CLI's exit code: 0 after `run()`, or 2 with one 'PROG: error: ...' line on stderr for a bad input."""
  try:
    run()
  except errors as e:
    print(f"{prog}: error: {one_line(e)}", file=sys.stderr, flush=True)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
