"""Peak memory of the train step per weighting method at BERT-base size, T = 8 and 32: what the T per-task
gradients of the shared parameters cost next to equal weighting (issue #33's goal: <= 2x equal at T = 32).

XLA's own account of the compiled step (arguments + outputs - donated aliases + temporaries), read from
`compiled.memory_analysis()` without allocating anything (as benchmarks/memory.py), hard sharing, one device,
float32, task-grouped batches of 32 x 128 tokens. Gradient methods hold the [T, P] per-task gradients
(gradients.task_grads: one vmap) unless weighting.task_grads recomputes them in chunks (chunked.py); GradMethods
(db_mtl, moco, excess_mtl) add [T, P] buffers in TrainState.

  python benchmarks/weighting_memory.py                          # BERT-base; minutes of compiling on 2 cores
  python benchmarks/weighting_memory.py --smoke                  # tiny sizes, seconds
  python benchmarks/weighting_memory.py --methods pcgrad@keep,pcgrad@recompute   # weighting.task_grads modes

A method may carry '@keep' / '@recompute' (weighting.task_grads; plain = 'auto': at BERT-base size, recompute above 8 tasks).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

from mtl_jax import weighting  # noqa: E402
from mtl_jax.models.encoder import EncoderConfig  # noqa: E402
from mtl_jax.models.multitask import build_model  # noqa: E402
from mtl_jax.scale import partitioning  # noqa: E402
from mtl_jax.step import optim, steps as steps_lib  # noqa: E402

BERT_BASE = dict(d_model=768, num_heads=12, mlp_dim=3072, num_layers=12, length=128, batch=32, vocab=30522)
SMOKE = dict(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, length=16, batch=32, vocab=128)


def _method(spec: str, num_tasks: int):
  name, _, mode = spec.partition("@")
  method = weighting.build(name, num_tasks)
  method.task_grads = mode or "auto"
  return method


def peak_bytes(method: str, num_tasks: int, size: dict) -> dict:
  cfg = EncoderConfig(d_model=size["d_model"], num_heads=size["num_heads"], mlp_dim=size["mlp_dim"],
                      num_layers=size["num_layers"], max_len=size["length"], vocab_size=size["vocab"])
  tx, _ = optim.make_optimizer(1000)
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = steps_lib.Steps(build_model(cfg, "hard", [2] * num_tasks), tx, ["classification"] * num_tasks, mesh,
                          partitioning.logical_axis_rules(), 0, size["batch"], size["length"], grouped=True,
                          weighting=_method(method, num_tasks))
  batch = steps_lib.dummy_batch(size["batch"], size["length"])
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), batch, steps.batch_shardings)
  with jax.set_mesh(steps.mesh):
    start = time.perf_counter()
    compiled = steps.train_step.lower(steps.abstract_state, abstract).compile()
    compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  peak = mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes + mem.temp_size_in_bytes
  params = sum(x.size for x in jax.tree.leaves(steps.abstract_state.params))
  return {"method": method, "tasks": num_tasks, "peak_gb": peak / 1e9, "state_gb": mem.argument_size_in_bytes / 1e9,
          "temp_gb": mem.temp_size_in_bytes / 1e9, "params_m": params / 1e6, "compile_s": compile_s}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--smoke", action="store_true", help="tiny sizes (a dry run)")
  parser.add_argument("--tasks", default="8,32")
  parser.add_argument("--methods", default="equal,pcgrad,db_mtl")
  parser.add_argument("--json", default=None, help="write the rows here")
  args = parser.parse_args(argv)
  size = SMOKE if args.smoke else BERT_BASE
  methods = args.methods.split(",")
  if "equal" not in methods:
    methods = ["equal", *methods]
  rows = []
  print(f"{'method':<12} {'T':>3} {'params M':>9} {'peak GB':>8} {'x equal':>8} {'state GB':>9} {'temp GB':>8} "
        f"{'compile s':>9}", flush=True)
  for t in [int(x) for x in args.tasks.split(",")]:
    base = None
    for m in methods:
      row = peak_bytes(m, t, size)
      base = row["peak_gb"] if m == "equal" else base
      row["x_equal"] = row["peak_gb"] / base
      rows.append(row)
      print(f"{m:<12} {t:>3} {row['params_m']:9.1f} {row['peak_gb']:8.2f} {row['x_equal']:8.2f} "
            f"{row['state_gb']:9.2f} {row['temp_gb']:8.2f} {row['compile_s']:9.0f}", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)
  return rows


if __name__ == "__main__":
  main()
