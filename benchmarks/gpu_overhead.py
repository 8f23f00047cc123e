"""Framework overhead on the accelerator: the trainer's jitted step vs a hand-written JAX step.

Why: benchmarks/gpu.sh measured our BERT-base-size step at 30 % MFU in bf16 and 1.16x slower than
torch.compile; this says how much of that is our framework (flax modules, logical axes, the
non-finite guard, stacked heads) rather than XLA's code for the model itself. Same model, same
batch, float32 (the hand-written step has no bf16 path), min over interleaved rounds.

  python benchmarks/gpu_overhead.py            # BERT-base size (a GPU; a few minutes on CPU is too slow)
  python benchmarks/gpu_overhead.py --smoke    # tiny sizes, a CPU dry run
"""

from __future__ import annotations

import argparse
import sys
import time

import jax

import framework_overhead as fo

BASE = dict(d_model=768, num_heads=12, mlp_dim=3072, num_layers=12, length=128, batch=256, vocab=30522, tasks=8)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
  args = parser.parse_args(argv)
  size = dict(fo.SMOKE) if args.smoke else BASE
  print(f"jax {jax.__version__} on {jax.devices()}; size {size}", flush=True)
  runs = {"real_hard_f32": fo.real_step(size), "minimal_jax_f32": fo.minimal_step(size),
          "real_hard_bf16": fo.real_step(size, dtype="bfloat16")}
  best = {name: float("inf") for name in runs}
  for run in runs.values():
    run()  # warm-up
  for _ in range(args.rounds):  # interleaved
    for name, run in runs.items():
      start = time.perf_counter()
      for _ in range(args.steps):
        run()
      best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
  for name, s in best.items():
    print(f"  {name:18s} {size['batch'] / s:8.1f} ex/s {s * 1e3:8.1f} ms/step", flush=True)
  ratio = best["real_hard_f32"] / best["minimal_jax_f32"]
  print(f"real_hard_f32 / minimal_jax_f32 step time {ratio:.3f} (framework overhead; target within 5 %: "
        f"{'MET' if abs(ratio - 1) <= 0.05 else 'MISSED'})", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
