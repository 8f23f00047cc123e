"""Peak memory and step time per strategy at T = 8 and 32 on the peer configuration,
with and without remat / microbatches / bf16, in one run.

Peer configuration: d_model 256, 4 heads, 4 layers, mlp 1024, 128 tokens, batch 64, vocab 2048.
Peak memory is XLA's own account of the compiled train step (arguments + outputs - donated
aliases + temporaries: what the step needs resident at once), read from
`compiled.memory_analysis()` without allocating anything, so a configuration that would not
fit (sluice at T=32 without remat: ~40 GB) is still measured. Step time (min of timed steps
after a warm-up) is measured where a step takes seconds, not minutes (hard, soft; --time_all
for every row). Variants:
  base        float32, no remat, one microbatch
  remat       EncoderConfig.remat_policy='full'
  remat_mb4   + microbatches.num=4
  bf16_mb4    + EncoderConfig.dtype='bfloat16' (f32 params / optimizer)

  python benchmarks/memory.py                 # ~8 min on 2 cores
  python benchmarks/memory.py --smoke         # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mtl_jax.step import optim, steps as steps_lib  # noqa: E402
from mtl_jax.scale import partitioning
from mtl_jax.models.encoder import EncoderConfig  # noqa: E402
from mtl_jax.models.multitask import build_model  # noqa: E402

PEER = dict(d_model=256, num_heads=4, mlp_dim=1024, num_layers=4, length=128, batch=64, vocab=2048)
SMOKE = dict(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, length=16, batch=16, vocab=128)
VARIANTS = {"base": ({}, 1), "remat": ({"remat_policy": "full"}, 1), "remat_mb4": ({"remat_policy": "full"}, 4),
            "bf16_mb4": ({"remat_policy": "full", "dtype": "bfloat16"}, 4)}
STRATEGIES = ("hard", "soft", "sluice", "cross_stitch", "mmoe")
TIMED = ("hard", "soft")
BUDGET_GB = 12.0


def build(strategy, num_tasks, size, options, microbatches, seed=0):
  cfg = EncoderConfig(d_model=size["d_model"], num_heads=size["num_heads"], mlp_dim=size["mlp_dim"],
                      num_layers=size["num_layers"], max_len=size["length"], vocab_size=size["vocab"], **options)
  model = build_model(cfg, strategy, [2] * num_tasks)
  tx, _ = optim.make_optimizer(1000)
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = steps_lib.Steps(model, tx, ["classification"] * num_tasks, mesh, partitioning.logical_axis_rules(), seed,
                          size["batch"], size["length"], microbatches=microbatches)
  rng = np.random.default_rng(seed)
  batch = steps_lib.dummy_batch(size["batch"], size["length"])
  batch["input_ids"] = rng.integers(1, size["vocab"], batch["input_ids"].shape).astype(np.int32)
  batch["task_id"] = rng.integers(0, num_tasks, size["batch"]).astype(np.int32)  # a mixed batch
  batch["label"] = rng.integers(0, 2, size["batch"]).astype(np.int32)
  return steps, batch


def measure(strategy, num_tasks, size, variant, timed_steps):
  options, mb = VARIANTS[variant]
  steps, batch = build(strategy, num_tasks, size, options, mb)
  abstract_batch = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), batch,
                                steps.batch_shardings)
  with jax.set_mesh(steps.mesh):
    start = time.perf_counter()
    compiled = steps.train_step.lower(steps.abstract_state, abstract_batch).compile()
    compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  peak = mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes + mem.temp_size_in_bytes
  row = {"strategy": strategy, "tasks": num_tasks, "variant": variant, "peak_gb": peak / 1e9,
         "temp_gb": mem.temp_size_in_bytes / 1e9, "state_gb": mem.argument_size_in_bytes / 1e9,
         "compile_s": compile_s, "step_s": None}
  if timed_steps:
    state = steps.init_state()
    with jax.set_mesh(steps.mesh):
      device_batch = steps.put_batch(batch)
      state, m = compiled(state, device_batch)
      jax.block_until_ready(m)
      times = []
      for _ in range(timed_steps):
        start = time.perf_counter()
        state, m = compiled(state, device_batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - start)
    row["step_s"] = min(times)
    del state
  return row


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--smoke", action="store_true", help="tiny sizes (a dry run)")
  parser.add_argument("--tasks", default="8,32")
  parser.add_argument("--strategies", default=",".join(STRATEGIES))
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--timed_steps", type=int, default=2)
  parser.add_argument("--time_all", action="store_true", help="step time for every strategy (slow: T x hard)")
  parser.add_argument("--json", default=None, help="write the rows here")
  args = parser.parse_args(argv)
  size = SMOKE if args.smoke else PEER
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus; size {size}", flush=True)
  rows = []
  for t in [int(x) for x in args.tasks.split(",")]:
    for strategy in args.strategies.split(","):
      for variant in args.variants.split(","):
        timed = args.timed_steps if (args.time_all or strategy in TIMED) else 0
        row = measure(strategy, t, size, variant, timed)
        rows.append(row)
        step = f"{row['step_s']:.2f} s" if row["step_s"] is not None else "-"
        print(f"T={t:<3d} {strategy:13s} {variant:10s} peak {row['peak_gb']:7.2f} GB (state {row['state_gb']:.2f}, "
              f"temp {row['temp_gb']:.2f})  step {step:>8s}  compile {row['compile_s']:.1f} s", flush=True)
  print("\nratios (same strategy and T):")
  by = {(r["strategy"], r["tasks"], r["variant"]): r for r in rows}
  for (strategy, t, variant), r in by.items():
    base = by.get((strategy, t, "base"))
    if variant == "base" or base is None:
      continue
    mem = r["peak_gb"] / base["peak_gb"]
    tim = (f", step x{r['step_s'] / base['step_s']:.2f}" if r["step_s"] and base["step_s"] else "")
    print(f"  T={t:<3d} {strategy:13s} {variant:10s} memory x{mem:.3f}{tim}")
  if not args.smoke:
    print(f"\ntarget: sluice and cross_stitch at T=32 fit in {BUDGET_GB:.0f} GB with remat + microbatches:")
    for strategy in ("sluice", "cross_stitch"):
      r = by.get((strategy, 32, "remat_mb4"))
      if r is not None:
        print(f"  {strategy:13s} remat_mb4 peak {r['peak_gb']:.2f} GB -> {'MET' if r['peak_gb'] <= BUDGET_GB else 'MISSED'}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
