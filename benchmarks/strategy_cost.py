"""Step time and compile time of every sharing strategy at T = 2, 8, 32 tasks.

Each strategy trains the real model (embedder + trunk + stacked heads) with the
real optimizer through steps.Steps, on MIXED batches (task ids drawn uniformly),
with the same per-task tower size at every T. Ratios come from this one run:
  soft / hard                  routed: ~1 tower per example (targets <= 1.2 at T=8, <= 1.5 at T=32)
  soft_grouped / hard          soft on the 'grouped' layout (B/T rows per task): towers vmapped
                               over row groups, no per-example weight gathers
  soft_dense / hard            the same towers without routing (every tower on every example)
  sluice / (T x hard)          all T columns on every example (target <= 1.1)
  sluice / hard_TxB            ... against hard sharing on a T x B batch: the same tokens in one pass
  cross_stitch / (T x hard), mmoe / (E x hard)
  compile(T=32) / compile(T=2) per strategy (target <= 1.5)
  adapters, lora, adapter_fusion / hard   parameter-efficient strategies on the same trunk, frozen as their
                               gin files freeze it (no trunk gradients or Adam state); *_grouped: grouped layout
  XLA temp memory of each compiled step, and its ratio to hard's
Timings are the minimum over interleaved rounds (and compile repeats), which is
what survives a busy shared machine; XLA:CPU dots run single-threaded unless --multi_thread.

  python benchmarks/strategy_cost.py --quick     # a few minutes on 2 CPU cores
  python benchmarks/strategy_cost.py             # bigger tower
  python benchmarks/strategy_cost.py --quick --no_ynn_reduce   # see benchmarks/README.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time

SIZES = {  # the per-task tower and the batch; the same at every T
    "quick": dict(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, batch=32, length=32, vocab=512,
                  steps=3, rounds=8, compiles=2),
    "full": dict(d_model=64, num_heads=4, mlp_dim=256, num_layers=2, batch=32, length=64, vocab=2048,
                 steps=2, rounds=6, compiles=2),
}
VARIANTS = ("hard", "soft", "soft_grouped", "soft_dense", "sluice", "cross_stitch", "mmoe", "hard_TxB",
            "adapters", "adapters_grouped", "lora", "lora_grouped", "adapter_fusion")
PEFT = ("adapters", "lora", "adapter_fusion")
FROZEN_TRUNK = {"param_groups.freeze": ["^embedder/", "^trunk/(layer_[0-9]+|ln_final)/"]}  # as gin/sharing/<peft>.gin


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="tiny tower, fewer rounds")
  parser.add_argument("--tasks", default="2,8,32", help="comma-separated task counts")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--experts", type=int, default=4, help="MMoE experts")
  parser.add_argument("--compiles", type=int, default=None, help="compile repeats (default: the size's)")
  parser.add_argument("--multi_thread", action="store_true", help="let XLA:CPU use its thread pool for dots")
  parser.add_argument("--no_ynn_reduce", action="store_true",
                      help="XLA:CPU without YNNPACK reduce fusions (slow on per-example shapes; see README)")
  return parser.parse_args(argv)


ARGS = parse(sys.argv[1:]) if __name__ == "__main__" else None
if ARGS is not None:  # XLA_FLAGS must be set before jax starts; every token needs its '--'
  extra = [] if ARGS.multi_thread else ["--xla_cpu_multi_thread_eigen=false"]
  extra += ["--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_REDUCE"] if ARGS.no_ynn_reduce else []
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *extra]).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from mtl_jax.step import optim, steps as steps_lib  # noqa: E402
from mtl_jax.scale import partitioning
from mtl_jax.models.encoder import EncoderConfig  # noqa: E402
from mtl_jax.models.multitask import build_model  # noqa: E402


def variant(name: str, num_tasks: int, experts: int) -> tuple[str, dict, int, bool]:
  """Benchmark row -> (registered strategy, gin bindings, batch multiplier, grouped layout)."""
  if name == "soft_dense":
    return "soft", {"soft_sharing.routing": "dense"}, 1, False
  if name == "soft_grouped":
    return "soft", {}, 1, True
  if name == "mmoe":
    return "mmoe", {"mmoe.num_experts": experts}, 1, False
  if name == "hard_TxB":
    return "hard", {}, num_tasks, False
  if name.endswith("_grouped") and name[:-len("_grouped")] in PEFT:
    return name[:-len("_grouped")], FROZEN_TRUNK, 1, True
  if name in PEFT:
    return name, FROZEN_TRUNK, 1, False
  return name, {}, 1, False


def build(name: str, num_tasks: int, size: dict, experts: int, seed: int = 0) -> dict:
  """Steps, initial state and a device batch for one benchmark row (nothing compiled yet)."""
  strategy, bindings, mult, grouped = variant(name, num_tasks, experts)
  gin.clear_config()
  for key, value in bindings.items():
    gin.bind_parameter(key, value)
  batch_size, length = size["batch"] * mult, size["length"]
  cfg = EncoderConfig(d_model=size["d_model"], num_heads=size["num_heads"], mlp_dim=size["mlp_dim"],
                      num_layers=size["num_layers"], max_len=length, dropout_rate=0.0, vocab_size=size["vocab"])
  model = build_model(cfg, strategy, [2] * num_tasks)
  tx, _ = optim.make_optimizer(1000)
  mesh, rules = partitioning.make_mesh((1, 1)), partitioning.logical_axis_rules()
  steps = steps_lib.Steps(model, tx, ["classification"] * num_tasks, mesh, rules, seed, batch_size, length,
                          grouped=grouped)
  rng = np.random.default_rng(seed)
  batch = steps_lib.dummy_batch(batch_size, length)
  batch["input_ids"] = rng.integers(1, size["vocab"], batch["input_ids"].shape).astype(np.int32)
  if grouped:  # the trainer's flattened 'grouped' batch: B/T rows of each task, task-major
    if batch_size % num_tasks:
      raise SystemExit(f"{name}: batch {batch_size} is not divisible by T={num_tasks}")
    batch["task_id"] = np.repeat(np.arange(num_tasks, dtype=np.int32), batch_size // num_tasks)
  else:
    batch["task_id"] = rng.integers(0, num_tasks, batch_size).astype(np.int32)  # a mixed batch
  batch["label"] = rng.integers(0, 2, batch_size).astype(np.int32)
  state = steps.init_state()
  with jax.set_mesh(mesh):
    device_batch = steps.put_batch(batch)
  gin.clear_config()  # the strategy already holds its settings
  return {"steps": steps, "state": state, "batch": device_batch, "mesh": mesh, "compile_s": float("inf")}


def compile_step(entry: dict) -> None:
  """Trace + lower + XLA-compile the train step from scratch; keeps the fastest time seen."""
  jax.clear_caches()  # else a repeat is an in-memory cache hit
  with jax.set_mesh(entry["mesh"]):
    start = time.perf_counter()
    entry["step"] = entry["steps"].train_step.lower(entry["state"], entry["batch"]).compile()
    entry["compile_s"] = min(entry["compile_s"], time.perf_counter() - start)
    memory = entry["step"].memory_analysis()
    entry["temp_bytes"] = getattr(memory, "temp_size_in_bytes", float("nan")) if memory is not None else float("nan")
    entry["state"], metrics = entry["step"](entry["state"], entry["batch"])  # warm-up
    jax.block_until_ready(metrics)


def time_round(entry: dict, steps: int) -> float:
  """Seconds per step over `steps` steps, after one untimed step: a variant timed right after
  a much bigger one otherwise pays for cold caches and freshly faulted-in buffers."""
  with jax.set_mesh(entry["mesh"]):
    entry["state"], metrics = entry["step"](entry["state"], entry["batch"])
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
      entry["state"], metrics = entry["step"](entry["state"], entry["batch"])
    jax.block_until_ready(metrics)
  return (time.perf_counter() - start) / steps


def run(args) -> dict:
  size = SIZES["quick" if args.quick else "full"]
  names = args.variants.split(",")
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}\nsize {size}", flush=True)
  res = {}
  for t in [int(t) for t in args.tasks.split(",")]:
    entries = {name: build(name, t, size, args.experts) for name in names}
    for _ in range(args.compiles or size["compiles"]):  # interleaved, like the step timings below
      for name in names:
        compile_step(entries[name])
    for name in names:
      print(f"  T={t:<3} {name:<13} compiled in {entries[name]['compile_s']:6.2f} s", flush=True)
    best = {name: float("inf") for name in names}
    for _ in range(size["rounds"]):  # interleaved: every variant sees the same machine load
      for name in names:
        best[name] = min(best[name], time_round(entries[name], size["steps"]))
    for name in names:
      res[name, t] = {"step_s": best[name], "compile_s": entries[name]["compile_s"],
                      "temp_bytes": entries[name]["temp_bytes"]}
      print(f"  T={t:<3} {name:<13} step {best[name] * 1e3:9.2f} ms", flush=True)
    del entries
  return res


def report(res: dict, args) -> None:
  tasks = sorted({t for _, t in res})
  names = [n for n in args.variants.split(",")]

  def row(label, fn, note=""):
    cells = []
    for t in tasks:
      try:
        cells.append(f"{fn(t):<9.2f}")
      except KeyError:
        cells.append(f"{'-':<9}")
    print(f"  {label:28}" + "".join(cells) + note)

  step = lambda n, t: res[n, t]["step_s"]
  print("\nstep time (ms)" + " " * 16 + "".join(f"T={t:<7}" for t in tasks))
  for n in names:
    row(n, lambda t, n=n: step(n, t) * 1e3)
  print("\nstep-time ratios" + " " * 14 + "".join(f"T={t:<7}" for t in tasks))
  row("soft / hard", lambda t: step("soft", t) / step("hard", t), "  target <= 1.2 at T=8, <= 1.5 at T=32")
  row("soft_grouped / hard", lambda t: step("soft_grouped", t) / step("hard", t), "  grouped layout")
  row("soft_dense / hard", lambda t: step("soft_dense", t) / step("hard", t), "  no routing: grows with T")
  row("sluice / (T x hard)", lambda t: step("sluice", t) / (t * step("hard", t)), "  target <= 1.1")
  row("sluice / hard_TxB", lambda t: step("sluice", t) / step("hard_TxB", t), "  same tokens in one pass")
  row("cross_stitch / (T x hard)", lambda t: step("cross_stitch", t) / (t * step("hard", t)))
  row(f"mmoe / (E={args.experts} x hard)", lambda t: step("mmoe", t) / (args.experts * step("hard", t)))
  row("hard_TxB / (T x hard)", lambda t: step("hard_TxB", t) / (t * step("hard", t)), "  CPU scaling in batch")
  for n in [n for n in names if n.split("_grouped")[0] in PEFT]:
    row(f"{n} / hard", lambda t, n=n: step(n, t) / step("hard", t), "  trunk frozen")
  print("\nXLA temp memory of the step (MiB)" + " " * 0 + "".join(f"T={t:<7}" for t in tasks))
  for n in names:
    row(n, lambda t, n=n: res[n, t]["temp_bytes"] / 2 ** 20)
  for n in [n for n in names if n != "hard"]:
    row(f"{n} / hard (memory)", lambda t, n=n: res[n, t]["temp_bytes"] / res["hard", t]["temp_bytes"])
  lo, hi = tasks[0], tasks[-1]
  print(f"\ncompile time (s), ratio T={hi} / T={lo} (target <= 1.5)")
  for n in names:
    if (n, lo) in res and (n, hi) in res:
      a, b = res[n, lo]["compile_s"], res[n, hi]["compile_s"]
      print(f"  {n:<13} {a:6.2f} -> {b:6.2f}   ratio {b / a:.2f}")


if __name__ == "__main__":
  report(run(ARGS), ARGS)
