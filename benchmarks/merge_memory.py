"""Peak memory of mtl-merge on all-MiniLM-L6-v2 (22.7M parameters): is the merge leaf by leaf?

    python benchmarks/merge_memory.py [--work /tmp/merge_memory] [--methods ties regmean]

Trains two single-task runs from MiniLM (rotten_tomatoes, vader_tweets; 2 steps each: the weights only
need to differ from the checkpoint), then runs mtl-merge once per method in a fresh process with one grid
point and prints: the process's peak RSS (TensorFlow, JAX, XLA and evaluation included), and the peak of
numpy memory while one candidate is merged (tracemalloc around select.merged), in units of one model's
float32 parameters. Leaf by leaf, the latter should be about the merged model + theta_0 (two models)
plus one transformer layer per run, not N + 2 models.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAIN = ["--gin_file=gin/runs/minilm_finetune.gin", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}",
         "--gin.BATCH_SIZE=8", "--gin.TRAIN_STEPS=2", "--gin.trainer.train.eval_period=2",
         "--gin.trainer.train.checkpoint_period=2", "--gin.make_mesh.mesh_shape=(1, 1)", "--no_progress"]
GRID = {"ties": ["--grid", "density=0.2", "--grid", "scaling=1.0"], "regmean": ["--grid", "alpha=0.9"],
        "task_arithmetic": ["--grid", "scaling=0.5"], "fisher": [], "average": [],
        "dare_ties": ["--grid", "drop_rate=0.5", "--grid", "scaling=1.0"]}

CHILD = r"""
import json, resource, sys, tracemalloc
from mtl_jax.merge import cli, select
peaks, inner = [], select.merged
def measured(target, *args, **kwargs):
  tracemalloc.start()
  out = inner(target, *args, **kwargs)
  peaks.append(tracemalloc.get_traced_memory()[1])
  tracemalloc.stop()
  model = sum(v.nbytes for v in out.values())
  peaks[-1] = (peaks[-1], model)
  return out
select.merged = measured
rc = cli.main(sys.argv[1:])
print("MEASURED " + json.dumps({"rc": rc, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                "merge_numpy_peak_mb": peaks[0][0] / 2**20, "model_mb": peaks[0][1] / 2**20}))
"""


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("--work", default="/tmp/merge_memory")
  parser.add_argument("--methods", nargs="+", default=["ties", "regmean"])
  args = parser.parse_args()
  work = pathlib.Path(args.work)
  runs = []
  for task in ("rotten_tomatoes", "vader_tweets"):
    run = work / task
    runs.append(str(run))
    if not (run / "results.json").exists():
      subprocess.run([sys.executable, "-m", "mtl_jax.train", *TRAIN, f"--gin.MIXTURE_OR_TASK_NAME='{task}'",
                      f"--gin.MODEL_DIR='{run}'"], cwd=REPO, check=True)
  for method in args.methods:
    out = work / f"merged_{method}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    proc = subprocess.run([sys.executable, "-c", CHILD, "--runs", *runs, "--out", str(out), "--method", method,
                           "--no_test", *GRID[method]], cwd=REPO, capture_output=True, text=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith("MEASURED ")]
    if not line:
      print(proc.stdout[-2000:], proc.stderr[-3000:])
      return 1
    got = json.loads(line[0][9:])
    print(f"{method}: peak RSS {got['peak_rss_mb']:.0f} MB; numpy peak while merging {got['merge_numpy_peak_mb']:.0f} MB "
          f"= {got['merge_numpy_peak_mb'] / got['model_mb']:.2f} x one model ({got['model_mb']:.0f} MB float32)",
          flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
