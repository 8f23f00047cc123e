"""Hard sharing at T=128 vs T=8: train-step compile and step time, and packed evaluation.

Targets (issue 16, part 4): compile(T=128) / compile(T=8) <= 1.5 and step(T=128) / step(T=8)
<= 1.5 for hard sharing (same batch, same trunk: only the stacked [T, D, C] heads grow), and
evaluation of 128 tasks through ONE compiled predict step whose cost is linear in the total
number of eval examples (the Evaluator packs tasks into shared batches above 32 tasks):
  eval(T=128, N) / eval(T=8, N)   ~ 1   (same examples, more tasks)
  eval(T=128, 2N) / eval(T=128, N) ~ 2  (linear)
  predict-step compilations for all of it: 1
Builds, compiles and timing reuse benchmarks/strategy_cost.py (minimum over interleaved rounds).

  python benchmarks/many_tasks.py --quick
  python benchmarks/many_tasks.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_cpu_multi_thread_eigen=false"]).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import strategy_cost as sc  # noqa: E402


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--tasks", default="8,128")
  parser.add_argument("--eval_examples", type=int, default=6400, help="N (128 tasks x 50 validation examples)")
  return parser.parse_args(argv)


def eval_batches(entry, num_tasks: int, n: int, batch: int, length: int, vocab: int) -> list:
  """n packed eval examples of num_tasks tasks as ceil(n / batch) batches (weight 0 = padding)."""
  rng = np.random.default_rng(1)
  batches = []
  for start in range(0, n, batch):
    b = sc.steps_lib.dummy_batch(batch, length)
    b["input_ids"] = rng.integers(1, vocab, b["input_ids"].shape).astype(np.int32)
    b["task_id"] = rng.integers(0, num_tasks, batch).astype(np.int32)
    b["weight"] = (np.arange(batch) < n - start).astype(np.float32)
    batches.append(b)
  jax.block_until_ready(entry["steps"].run_predict(entry["state"].params, batches[0]))  # compile, untimed
  return batches


def eval_round(entry, batches) -> float:
  start = time.perf_counter()
  for b in batches:
    jax.block_until_ready(entry["steps"].run_predict(entry["state"].params, b))
  return time.perf_counter() - start


def main(argv=None):
  args = parse(sys.argv[1:] if argv is None else argv)
  size = dict(sc.SIZES["quick" if args.quick else "full"])
  counts = [int(t) for t in args.tasks.split(",")]
  entries = {t: sc.build("hard", t, size, experts=4) for t in counts}
  for _ in range(size["compiles"]):
    for t in counts:
      sc.compile_step(entries[t])
  times = {t: float("inf") for t in counts}
  for _ in range(size["rounds"]):
    for t in counts:
      times[t] = min(times[t], sc.time_round(entries[t], size["steps"]))
  lo, hi = counts[0], counts[-1]
  n = args.eval_examples
  sets = {(t, n): eval_batches(entries[t], t, n, size["batch"], size["length"], size["vocab"]) for t in counts}
  sets[hi, 2 * n] = eval_batches(entries[hi], hi, 2 * n, size["batch"], size["length"], size["vocab"])
  ev = {k: float("inf") for k in sets}
  for _ in range(5):  # interleaved rounds, minimum kept (a busy shared machine)
    for (t, m), batches in sets.items():
      ev[t, m] = min(ev[t, m], eval_round(entries[t], batches))
  compiles = {t: entries[t]["steps"].predict_step._cache_size() for t in counts}
  print(f"size={'quick' if args.quick else 'full'} {size}")
  for t in counts:
    print(f"T={t:4d}: compile {entries[t]['compile_s']:.2f} s   step {1e3 * times[t]:.2f} ms   "
          f"eval N={n}: {ev[t, n]:.2f} s ({-(-n // size['batch'])} predict calls, {compiles[t]} compilation)")
  print(f"T={hi}: eval N={2 * n}: {ev[hi, 2 * n]:.2f} s")
  ratios = {"compile": entries[hi]["compile_s"] / entries[lo]["compile_s"], "step": times[hi] / times[lo],
            "eval_tasks": ev[hi, n] / ev[lo, n], "eval_linear": ev[hi, 2 * n] / ev[hi, n]}
  for name, target in (("compile", 1.5), ("step", 1.5)):
    print(f"{name}(T={hi}) / {name}(T={lo}) = {ratios[name]:.2f}  (target <= {target}: "
          f"{'met' if ratios[name] <= target else 'MISSED'})")
  print(f"eval(T={hi}, N) / eval(T={lo}, N) = {ratios['eval_tasks']:.2f}  (same examples: ~1 expected)")
  print(f"eval(T={hi}, 2N) / eval(T={hi}, N) = {ratios['eval_linear']:.2f}  (linear: ~2 expected)")
  return ratios


if __name__ == "__main__":
  main()
