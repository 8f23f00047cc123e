"""Compile time of the train step vs depth: unrolled layer_{k} modules vs EncoderConfig.scan_layers.

Trace + lower + XLA compile of the real hard-sharing train step at 2 / 12 / 24 layers
(d_model 128, batch 16 x 64 tokens), caches cleared each time. Unrolled compile time grows
with depth; scanned should stay about flat (one layer body, looped). Ratios from one run.

  python benchmarks/compile_depth.py             # a few minutes on 2 cores
  python benchmarks/compile_depth.py --smoke     # 1 / 2 layers, tiny
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory import build  # noqa: E402  the same real-step builder


def compile_time(layers: int, scan: bool, size: dict) -> float:
  jax.clear_caches()
  steps, batch = build("hard", 2, {**size, "num_layers": layers}, {"scan_layers": scan}, 1)
  abstract_batch = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), batch,
                                steps.batch_shardings)
  with jax.set_mesh(steps.mesh):
    start = time.perf_counter()
    steps.train_step.lower(steps.abstract_state, abstract_batch).compile()
    return time.perf_counter() - start


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--smoke", action="store_true")
  args = parser.parse_args(argv)
  size = dict(d_model=128, num_heads=4, mlp_dim=512, length=64, batch=16, vocab=1024)
  depths = (1, 2) if args.smoke else (2, 12, 24)
  if args.smoke:
    size = dict(d_model=32, num_heads=2, mlp_dim=64, length=16, batch=8, vocab=128)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; size {size}", flush=True)
  res = {}
  for depth in depths:
    for scan in (False, True):
      res[(depth, scan)] = compile_time(depth, scan, size)
      print(f"  layers {depth:3d} {'scan    ' if scan else 'unrolled'} compile {res[(depth, scan)]:6.1f} s", flush=True)
  lo, hi = depths[0], depths[-1]
  for scan in (False, True):
    name = "scan" if scan else "unrolled"
    print(f"compile({hi} layers) / compile({lo} layers), {name}: {res[(hi, scan)] / res[(lo, scan)]:.2f}")
  print(f"unrolled / scan at {hi} layers: {res[(hi, False)] / res[(hi, True)]:.2f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
