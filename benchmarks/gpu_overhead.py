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
import jax.numpy as jnp
import numpy as np

import framework_overhead as fo

BASE = dict(d_model=768, num_heads=12, mlp_dim=3072, num_layers=12, length=128, batch=256, vocab=30522, tasks=8)


def einsum_attention(q, k, v, mask):
  """encoder.py's SelfAttention core: einsum, float32 softmax statistics, masked keys."""
  s = jnp.einsum("bqhk,bshk->bhqs", q, k).astype(jnp.float32) / np.sqrt(q.shape[-1])
  s = jnp.where(mask[:, None, None, :], s, jnp.finfo(jnp.float32).min)
  return jnp.einsum("bhqs,bshk->bqhk", jax.nn.softmax(s, -1).astype(q.dtype), v)


def attention_probe(size, steps: int) -> dict:
  """ms per forward + backward of one layer's attention core (bf16, the step's shapes): ours vs
  jax.nn.dot_product_attention (XLA and cuDNN). Says what fused attention could save per step."""
  b, l, h = size["batch"], size["length"], size["num_heads"]
  shape = (b, l, h, size["d_model"] // h)
  q, k, v = (jax.random.normal(jax.random.key(i), shape, jnp.bfloat16) for i in range(3))
  mask = jnp.arange(l)[None, :] < jnp.full((b, 1), l - 7)
  impls = {"einsum_softmax": einsum_attention,
           "jax_dpa_xla": lambda q, k, v, m: jax.nn.dot_product_attention(q, k, v, mask=m[:, None, None, :],
                                                                          implementation="xla")}
  if jax.devices()[0].platform == "gpu":
    impls["jax_dpa_cudnn"] = lambda q, k, v, m: jax.nn.dot_product_attention(  # cuDNN wants lengths, not a mask
        q, k, v, key_value_seq_lengths=m.sum(-1).astype(jnp.int32), implementation="cudnn")
  out, ref = {}, None
  for name, fn in impls.items():
    grad = jax.jit(jax.value_and_grad(lambda q, k, v: fn(q, k, v, mask).astype(jnp.float32).sum(), (0, 1, 2)))
    try:
      val, _ = grad(q, k, v)
      jax.block_until_ready(val)
    except Exception as e:  # noqa: BLE001 (a backend that cannot: say so, go on)
      print(f"  attention {name}: failed: {str(e).splitlines()[0][:160]}", flush=True)
      continue
    ref = float(val) if ref is None else ref
    start = time.perf_counter()
    for _ in range(steps):
      jax.block_until_ready(grad(q, k, v))
    out[name] = (time.perf_counter() - start) / steps
    print(f"  attention {name:16s} {out[name] * 1e3:7.2f} ms fwd+bwd per layer "
          f"(x{size['num_layers']} layers = {out[name] * size['num_layers'] * 1e3:.1f} ms/step); "
          f"sum {float(val):.1f} vs {ref:.1f}", flush=True)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
  parser.add_argument("--attention_only", action="store_true", help="only the attention-core probe")
  args = parser.parse_args(argv)
  size = dict(fo.SMOKE) if args.smoke else BASE
  print(f"jax {jax.__version__} on {jax.devices()}; size {size}", flush=True)
  attention_probe(size, 4 * args.steps)
  if args.attention_only:
    return 0
  runs = {"real_hard_f32": fo.real_step(size), "minimal_jax_f32": fo.minimal_step(size),
          "real_hard_bf16": fo.real_step(size, dtype="bfloat16")}
  for run in runs.values():
    run()  # warm-up
  best = fo.interleaved_best(runs, args.rounds, args.steps)
  for name, s in best.items():
    print(f"  {name:18s} {size['batch'] / s:8.1f} ex/s {s * 1e3:8.1f} ms/step", flush=True)
  ratio = best["real_hard_f32"] / best["minimal_jax_f32"]
  print(f"real_hard_f32 / minimal_jax_f32 step time {ratio:.3f} (framework overhead; target within 5 %: "
        f"{'MET' if abs(ratio - 1) <= 0.05 else 'MISSED'})", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
