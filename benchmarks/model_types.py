"""Step time and memory of each trunk layout (EncoderConfig.model_type) against the BERT layout at equal size.

Issue #34: what a T5 / DeBERTa-v3 / ModernBERT / ELECTRA trunk costs next to BERT's. Every layout gets the
same hidden size, layers, heads, feed-forward width, vocabulary, batch and length, built as the checkpoint
reader builds it (mtl_jax/pretrained/checkpoint.py) from that family's published config at this size:
  bert        post-LN, absolute positions, token types, erf GELU (BERT / RoBERTa / MiniLM)
  electra     BERT's layers; embeddings of half the width projected to d_model (ELECTRA-small's 128 -> 256)
  t5          v1.1 / Flan: RMSNorm pre-norm, relative bias table (32 buckets, distance 128), gated GELU
              (3 feed-forward matrices of d x ff instead of 2: more parameters, as the family has), no biases
  deberta-v2  v3: disentangled c2p + p2c attention over a 2 x 256-bucket relative table, LayerNormed
  modernbert  no biases, RoPE, a global layer every 3rd and sliding-window (64) local layers, GeGLU (3 matrices)
The real train step (hard sharing, 2 classification tasks, AdamW through steps.Steps) on random ids. Memory
is XLA's account of the compiled step (arguments + outputs - donated aliases + temporaries), read from
`compiled.memory_analysis()` as benchmarks/weighting_memory.py does; FLOPs are XLA's count of the same
compiled step (`cost_analysis()`), which no machine load disturbs. Step times are the minimum over
rounds that interleave the layouts, so every layout sees the same machine load: on a busy shared box the
RATIOS measured side by side in one run are what counts, not the absolute milliseconds.

  python benchmarks/model_types.py                 # small: d=256, 4 layers, L=128, B=16 (minutes on 2 cores)
  python benchmarks/model_types.py --size base     # BERT-base sizes (memory: compile only, --no_time)
  python benchmarks/model_types.py --smoke         # tiny, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mtl_jax.models.encoder import EncoderConfig  # noqa: E402
from mtl_jax.models.multitask import build_model  # noqa: E402
from mtl_jax.scale import partitioning  # noqa: E402
from mtl_jax.step import optim, steps as steps_lib  # noqa: E402

SIZES = {
    "smoke": dict(d_model=32, num_heads=2, mlp_dim=64, num_layers=3, length=32, batch=8, vocab=512,
                  steps=2, rounds=2),
    "small": dict(d_model=256, num_heads=4, mlp_dim=1024, num_layers=4, length=128, batch=16, vocab=8192,
                  steps=1, rounds=8),
    "base": dict(d_model=768, num_heads=12, mlp_dim=3072, num_layers=12, length=128, batch=32, vocab=30522,
                 steps=1, rounds=2),
}
TYPES = ("bert", "electra", "t5", "deberta-v2", "modernbert")


def config(model_type: str, size: dict, dropout: float = 0.1) -> EncoderConfig:
  """The layout at `size`, with the family's published switches (see the module docstring)."""
  common = dict(d_model=size["d_model"], num_heads=size["num_heads"], mlp_dim=size["mlp_dim"],
                num_layers=size["num_layers"], max_len=max(size["length"], 512), vocab_size=size["vocab"],
                dropout_rate=dropout, norm="post")
  if model_type in ("bert", "electra"):
    return EncoderConfig(model_type=model_type, gelu_exact=True, layer_norm_eps=1e-12, embed_norm=True,
                         type_vocab_size=2, embed_dim=size["d_model"] // 2 if model_type == "electra" else 0,
                         **common)
  if model_type == "t5":
    return EncoderConfig(model_type="t5", mlp_gated=True, relative_buckets=32, relative_max_distance=128, **common)
  if model_type == "deberta-v2":
    return EncoderConfig(model_type="deberta-v2", gelu_exact=True, layer_norm_eps=1e-7, embed_norm=True,
                         relative_buckets=256, relative_max_distance=512, **common)
  return EncoderConfig(model_type="modernbert", embed_norm=True, layer_norm_eps=1e-5, rope_theta=160000.0,
                       rope_theta_local=10000.0, sliding_window=64, global_every=3, **common)


def build(model_type: str, size: dict, dropout: float, seed: int = 0) -> dict:
  cfg = config(model_type, size, dropout)
  tx, _ = optim.make_optimizer(1000)
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = steps_lib.Steps(build_model(cfg, "hard", [2, 2]), tx, ["classification"] * 2, mesh,
                          partitioning.logical_axis_rules(), seed, size["batch"], size["length"])
  rng = np.random.default_rng(seed)
  batch = steps_lib.dummy_batch(size["batch"], size["length"])
  batch["input_ids"] = rng.integers(5, size["vocab"], batch["input_ids"].shape).astype(np.int32)
  lengths = rng.integers(size["length"] // 2, size["length"] + 1, size["batch"])  # some padding, as real batches
  batch["input_mask"] = (np.arange(size["length"])[None] < lengths[:, None]).astype(np.int32)
  batch["input_ids"] *= batch["input_mask"]
  batch["task_id"] = rng.integers(0, 2, size["batch"]).astype(np.int32)
  batch["label"] = rng.integers(0, 2, size["batch"]).astype(np.int32)
  return {"cfg": cfg, "steps": steps, "mesh": mesh, "batch": batch}


def compile_and_measure(entry: dict, run: bool) -> None:
  steps, mesh = entry["steps"], entry["mesh"]
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), entry["batch"],
                          steps.batch_shardings)
  with jax.set_mesh(mesh):
    start = time.perf_counter()
    entry["step"] = steps.train_step.lower(steps.abstract_state, abstract).compile()
    entry["compile_s"] = time.perf_counter() - start
  mem = entry["step"].memory_analysis()
  entry["peak_bytes"] = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
                         + mem.temp_size_in_bytes)
  entry["temp_bytes"] = mem.temp_size_in_bytes
  cost = entry["step"].cost_analysis()  # XLA's count for the compiled step: independent of the machine's load
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  entry["flops"] = float(cost.get("flops", float("nan"))) if cost else float("nan")
  entry["params"] = sum(x.size for x in jax.tree.leaves(steps.abstract_state.params))
  if run:
    with jax.set_mesh(mesh):
      entry["state"] = steps.init_state()
      entry["device_batch"] = steps.put_batch(entry["batch"])
      entry["state"], metrics = entry["step"](entry["state"], entry["device_batch"])  # warm-up
      jax.block_until_ready(metrics)
      assert bool(metrics["finite"]), entry["cfg"].model_type


def time_round(entry: dict, n: int) -> float:
  """Seconds per step over n steps after one untimed step (caches warm after the previous layout)."""
  with jax.set_mesh(entry["mesh"]):
    entry["state"], metrics = entry["step"](entry["state"], entry["device_batch"])
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(n):
      entry["state"], metrics = entry["step"](entry["state"], entry["device_batch"])
    jax.block_until_ready(metrics)
  return (time.perf_counter() - start) / n


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--size", choices=tuple(SIZES), default="small")
  parser.add_argument("--smoke", action="store_true", help="--size smoke")
  parser.add_argument("--types", default=",".join(TYPES))
  parser.add_argument("--no_time", action="store_true", help="memory and parameters only (compile, no steps)")
  parser.add_argument("--dropout", type=float, default=0.1, help="every layout's dropout rate (fine-tuning's 0.1)")
  parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default: the size's)")
  parser.add_argument("--json", default=None, help="write the rows here")
  args = parser.parse_args(argv)
  name = "smoke" if args.smoke else args.size
  size = dict(SIZES[name], rounds=args.rounds or SIZES[name]["rounds"])
  types = args.types.split(",")
  if types[0] != "bert":
    types = ["bert", *[t for t in types if t != "bert"]]
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus, load average "
        f"{os.getloadavg()[0]:.1f}; size {name} {size}; dropout {args.dropout}; hard sharing, 2 tasks, float32", flush=True)
  entries = {t: build(t, size, args.dropout) for t in types}
  for t in types:
    compile_and_measure(entries[t], run=not args.no_time)
    print(f"  {t:<11} compiled in {entries[t]['compile_s']:6.1f} s", flush=True)
  best = {t: float("inf") for t in types}
  if not args.no_time:
    for _ in range(size["rounds"]):  # interleaved: every layout sees the same machine load
      for t in types:
        best[t] = min(best[t], time_round(entries[t], size["steps"]))
  base = entries["bert"]
  rows = []
  print(f"{'model_type':<11} {'params M':>9} {'x bert':>7} {'GFLOP':>8} {'x bert':>7} {'step ms':>9} {'x bert':>7} "
        f"{'peak MB':>9} {'x bert':>7} {'temp MB':>9} {'x bert':>7} {'compile s':>9}")
  for t in types:
    e = entries[t]
    row = {"model_type": t, "params_m": e["params"] / 1e6, "params_x": e["params"] / base["params"],
           "step_ms": best[t] * 1e3, "step_x": best[t] / best["bert"] if not args.no_time else float("nan"),
           "peak_mb": e["peak_bytes"] / 1e6, "peak_x": e["peak_bytes"] / base["peak_bytes"],
           "temp_mb": e["temp_bytes"] / 1e6, "temp_x": e["temp_bytes"] / base["temp_bytes"],
           "gflops": e["flops"] / 1e9, "flops_x": e["flops"] / base["flops"],
           "compile_s": e["compile_s"]}
    rows.append(row)
    print(f"{t:<11} {row['params_m']:9.2f} {row['params_x']:7.2f} {row['gflops']:8.2f} {row['flops_x']:7.2f} "
          f"{row['step_ms']:9.1f} {row['step_x']:7.2f} "
          f"{row['peak_mb']:9.1f} {row['peak_x']:7.2f} {row['temp_mb']:9.1f} {row['temp_x']:7.2f} "
          f"{row['compile_s']:9.1f}", flush=True)
  print(f"load average after: {os.getloadavg()[0]:.1f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"size": name, **size, "rows": rows}, f, indent=1)
  return rows


if __name__ == "__main__":
  main()
