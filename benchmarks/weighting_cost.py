"""Step time and peak memory of every weighting method / equal at T = 2, 8, 32 tasks.

The real train step (hard sharing, tiny tower, the real optimizer) on task-grouped batches
(B/T rows of each task: what gradient methods need), one run, interleaved rounds; the
time is the minimum over rounds (what survives a busy shared machine), memory is XLA's
own accounting of the compiled step (arguments + outputs + temporaries - aliased).
Target: gradient methods <= 1.5 x equal at T = 8 on CPU.

  python benchmarks/weighting_cost.py --quick        # a few minutes on 2 CPU cores
  python benchmarks/weighting_cost.py --methods equal,pcgrad,mgda_ub --tasks 8
  python benchmarks/weighting_cost.py --methods pcgrad@keep,pcgrad@recompute --tasks 32   # weighting.task_grads
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="fewer rounds")
  parser.add_argument("--tasks", default="2,8,32")
  parser.add_argument("--methods", default="", help="comma-separated (default: all, plus mgda_ub)")
  parser.add_argument("--json", default="", help="also write the figures here")
  return parser.parse_args(argv)


ARGS = parse(sys.argv[1:]) if __name__ == "__main__" else None
if ARGS is not None:
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_cpu_multi_thread_eigen=false"]).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from mtl_jax.step import optim, steps as steps_lib  # noqa: E402
from mtl_jax.scale import partitioning
from mtl_jax import weighting
from mtl_jax.models.encoder import EncoderConfig  # noqa: E402
from mtl_jax.models.multitask import build_model  # noqa: E402

SIZE = dict(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, batch=32, length=32, vocab=512)


def build(method: str, num_tasks: int, seed: int = 0) -> dict:
  """method: a name, 'mgda_ub', or name@keep / name@recompute (weighting.task_grads; plain = 'auto')."""
  method, _, task_grads = method.partition("@")
  name, rep = ("mgda", True) if method == "mgda_ub" else (method, False)
  gin.clear_config()
  gin.bind_parameter("mtl_jax.weighting.method", name)
  gin.bind_parameter("mtl_jax.weighting.rep_grad", rep)
  gin.bind_parameter("mtl_jax.weighting.task_grads", task_grads or "auto")
  if name == "static":
    gin.bind_parameter("mtl_jax.weighting.static.weights", list(range(1, num_tasks + 1)))
  s = SIZE
  cfg = EncoderConfig(d_model=s["d_model"], num_heads=s["num_heads"], mlp_dim=s["mlp_dim"], num_layers=s["num_layers"],
                      max_len=s["length"], dropout_rate=0.0, vocab_size=s["vocab"])
  model = build_model(cfg, "hard", [2] * num_tasks)
  tx, _ = optim.make_optimizer(1000)
  mesh, rules = partitioning.make_mesh((1, 1)), partitioning.logical_axis_rules()
  steps = steps_lib.Steps(model, tx, ["classification"] * num_tasks, mesh, rules, seed, s["batch"], s["length"],
                          grouped=True)
  gin.clear_config()
  rng = np.random.default_rng(seed)
  batch = steps_lib.dummy_batch(s["batch"], s["length"])
  batch["input_ids"] = rng.integers(1, s["vocab"], batch["input_ids"].shape).astype(np.int32)
  batch["task_id"] = np.repeat(np.arange(num_tasks, dtype=np.int32), s["batch"] // num_tasks)
  batch["label"] = rng.integers(0, 2, s["batch"]).astype(np.int32)
  state = steps.init_state()
  with jax.set_mesh(mesh):
    device_batch = steps.put_batch(batch)
    compiled = steps.train_step.lower(state, device_batch).compile()
    state, metrics = compiled(state, device_batch)
    jax.block_until_ready(metrics)
  mem = compiled.memory_analysis()
  peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
          - mem.alias_size_in_bytes) if mem is not None else float("nan")
  return {"step": compiled, "state": state, "batch": device_batch, "mesh": mesh, "peak_bytes": peak,
          "kind": steps.weighting.kind, "times": []}


def time_round(entry: dict, steps: int) -> float:
  with jax.set_mesh(entry["mesh"]):
    entry["state"], metrics = entry["step"](entry["state"], entry["batch"])
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
      entry["state"], metrics = entry["step"](entry["state"], entry["batch"])
    jax.block_until_ready(metrics)
  return (time.perf_counter() - start) / steps


def main(args) -> dict:
  methods = args.methods.split(",") if args.methods else [*weighting.names(), "mgda_ub"]
  if "equal" not in methods:
    methods = ["equal", *methods]
  rounds, per_round = (4, 3) if args.quick else (8, 5)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus; size {SIZE}", flush=True)
  out = {}
  for t in [int(x) for x in args.tasks.split(",")]:
    entries = {m: build(m, t) for m in methods}
    for _ in range(rounds):  # interleaved: every method sees the same machine load
      for entry in entries.values():
        entry["times"].append(time_round(entry, per_round))
    base_time, base_mem = min(entries["equal"]["times"]), entries["equal"]["peak_bytes"]
    print(f"\nT={t}  (equal: {base_time * 1e3:.2f} ms/step, {base_mem / 2**20:.1f} MiB)")
    print(f"  {'method':<12} {'kind':<9} {'ms/step':>8} {'x equal':>8} {'MiB':>7} {'x equal':>8}")
    for m, e in entries.items():
      best = min(e["times"])
      out.setdefault(m, {})[t] = {"ms": best * 1e3, "time_ratio": best / base_time,
                                  "mib": e["peak_bytes"] / 2**20, "mem_ratio": e["peak_bytes"] / base_mem}
      r = out[m][t]
      print(f"  {m:<12} {e['kind']:<9} {r['ms']:8.2f} {r['time_ratio']:8.2f} {r['mib']:7.1f} {r['mem_ratio']:8.2f}",
            flush=True)
  if 8 in [int(x) for x in args.tasks.split(",")]:
    grad = {m: v[8]["time_ratio"] for m, v in out.items() if m in entries and entries[m]["kind"] == "gradient"}
    missed = {m: round(r, 2) for m, r in grad.items() if r > 1.5}
    print(f"\ntarget gradient methods <= 1.5 x equal at T=8: {'met' if not missed else 'missed by ' + str(missed)}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == "__main__":
  main(ARGS)
