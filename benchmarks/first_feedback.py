"""Time to the first feedback a new user gets (issue #26 item 7): a configuration error, and two predictions.

  python benchmarks/first_feedback.py [--repeats 3] [--model_dir DIR]

Each case is a fresh `python -m ...` process, timed from start to exit (wall clock; the one error line is
the last thing it prints). Goals: <= 3 s for a typo'd macro / gin file path (and, since the parameter check
reads the configurables with ast, a typo'd parameter; since mtl_jax/gin_values.py, a bad literal count on
the command line), <= 10 s for any other configuration error (an unknown task needs TF / seqio / JAX
imported), and <= 5 s for `mtl-predict` on two lines. The first predict of a fresh run takes the full
path (TensorFlow, seqio) and caches the run's predict manifest; the repeats after it take the fast path
(mtl_jax/predict/fast.py: no TensorFlow / seqio import; the forward read back from the CLI's persistent
XLA cache, MTL_JAX_CACHE/xla_predict) and are the ones the goal is read on.
Without --model_dir a tiny run of the example file tasks is trained first (not timed). The minimum over
repeats is the number to compare; the children's CPU seconds (user + sys) are printed beside it, a steadier
figure on a shared box (the load average is printed too).
"""

from __future__ import annotations

import argparse
import os
import resource
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
RUN = ["--gin_file=gin/runs/quickstart.gin"]
ERRORS = {  # name: (extra train arguments, goal in seconds, a piece of the expected error line)
    "typo'd macro": (["--gin.TRAIN_STEP=40"], 3.0, "did you mean --gin.TRAIN_STEPS?"),
    "typo'd gin file": (["--gin_file=gin/sharing/adapter.gin"], 3.0, "did you mean gin/sharing/adapters.gin?"),
    "typo'd parameter": (["--gin.trainer.train.evl_period=5"], 3.0, "did you mean trainer.train.eval_period?"),
    "bad value": (["--gin.TRAIN_STEPS=0"], 10.0, "TRAIN_STEPS must be a positive int"),
    "unknown task": (["--gin.MIXTURE_OR_TASK_NAME=bbc_topik"], 10.0, "unknown task or mixture"),
}


CPU = []  # CPU seconds (user + sys) of each timed child, in order: on a busy box closer to idle wall time


def timed(argv, env) -> tuple[float, subprocess.CompletedProcess]:
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
  return wall, proc


def tiny_run(model_dir: pathlib.Path, env) -> None:
  _, proc = timed(["-m", "mtl_jax.train", "--no_progress", *RUN, "--gin_file=gin/tasks/example_files.gin",
                   "--gin_file=gin/models/tiny.gin", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}",
                   "--gin.BATCH_SIZE=16", "--gin.TRAIN_STEPS=10", f"--gin.MODEL_DIR={model_dir}"], env)
  if proc.returncode:
    raise SystemExit(f"the tiny run failed:\n{proc.stderr[-2000:]}")


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--model_dir", help="a trained MODEL_DIR with task file_reviews (default: train a tiny one)")
  args = p.parse_args()
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
  rows = []
  with tempfile.TemporaryDirectory(prefix="first_feedback_") as tmp:
    tmp = pathlib.Path(tmp)
    for name, (extra, goal, expected) in ERRORS.items():
      times = []
      for _ in range(args.repeats):
        seconds, proc = timed(["-m", "mtl_jax.train", *RUN, *extra, f"--gin.MODEL_DIR={tmp / 'never'}"], env)
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        if proc.returncode != 2 or expected not in last or (tmp / "never").exists():
          raise SystemExit(f"{name}: unexpected outcome (rc {proc.returncode}): {last}")
        times.append((seconds, CPU[-1]))
      rows.append((f"config error: {name}", times, goal))
    model_dir = pathlib.Path(args.model_dir) if args.model_dir else tmp / "run"
    if not args.model_dir:
      tiny_run(model_dir, env)
    (tmp / "two.txt").write_text("the film was wonderful\na dull and broken camera\n")
    predict = ["-m", "mtl_jax.predict", f"--model_dir={model_dir}", f"--input={tmp / 'two.txt'}",
               "--tasks=file_reviews"]
    times = []
    for _ in range(args.repeats + 1):
      seconds, proc = timed(predict, env)
      if proc.returncode or len(proc.stdout.splitlines()) != 2:
        raise SystemExit(f"mtl-predict failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
      times.append((seconds, CPU[-1]))
    if times[0] and not args.model_dir:  # a fresh run has no manifest yet: the full path, which caches one
      rows.append(("mtl-predict 2 lines, first (full path)", times[:1], None))
    rows.append(("mtl-predict 2 lines (manifest: no TF)", times[1:], 5.0))
  load = os.getloadavg()
  print(f"first feedback, wall seconds over {args.repeats} repeats (load average {load[0]:.1f} on "
        f"{os.cpu_count()} CPUs)")
  print(f"{'case':40s} {'wall min':>8s} {'median':>7s} {'CPU min':>8s}  goal (on wall min)")
  for name, times, goal in rows:
    walls, cpus = [t for t, _ in times], [c for _, c in times]
    verdict = "" if goal is None else f"<= {goal:.0f} s {'met' if min(walls) <= goal else 'MISSED'}"
    print(f"{name:40s} {min(walls):8.2f} {statistics.median(walls):7.2f} {min(cpus):8.2f}  {verdict}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
