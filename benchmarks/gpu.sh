#!/usr/bin/env bash
# One short prepared GPU check (<= 8 min on one accelerator), run when the device tool lends a
# machine:  bash benchmarks/gpu.sh            (results under ${OUT:-/tmp/gpu_bench})
#           bash benchmarks/gpu.sh --smoke    (tiny sizes: a CPU dry run of every step below)
# 1. MFU of a BERT-base-size encoder (768 / 12 heads / 12 layers / 3072, 128 tokens) in bf16,
#    hard and soft (grouped, T=8) sharing: model FLOPs 6 * params_per_token * tokens (+ attention)
#    / step time / the chip's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s; A100: 312).
# 2. examples/s vs PyTorch at the same configuration (AMP bf16 autocast; torch.compile if it works).
# 3. the sharded train step on the real device(s): FSDP preset vs data parallel.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_bench}; mkdir -p "$OUT"
SMOKE=""; [ "${1:-}" = "--smoke" ] && SMOKE="--smoke"
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
export TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
( nvidia-smi --query-gpu=name,memory.total --format=csv || echo "no nvidia-smi" ) > "$OUT/device.txt" 2>&1
python - "$PEAK_TFLOPS" $SMOKE <<'PY' 2>&1 | tee "$OUT/mfu.txt"
import sys, time, os
sys.path.insert(0, "benchmarks")
import jax, numpy as np
peak = float(sys.argv[1]) * 1e12
smoke = "--smoke" in sys.argv
import framework_overhead as fo
size = dict(fo.SMOKE) if smoke else dict(d_model=768, num_heads=12, mlp_dim=3072, num_layers=12, length=128,
                                           batch=256, vocab=30522, tasks=8)
print("devices", jax.devices(), "size", size, flush=True)
d, f, n, l, b = (size[k] for k in ("d_model", "mlp_dim", "num_layers", "length", "batch"))
flops = 6 * b * l * n * (4 * d * d + 2 * d * f) + 6 * b * n * 2 * l * l * d  # matmuls + attention, fwd+bwd
def timed(run, steps=3 if smoke else 10):
  run(); run()
  t = time.perf_counter()
  for _ in range(steps): run()
  return (time.perf_counter() - t) / steps
res = {}
for name, kw in (("hard_bf16", dict(dtype="bfloat16")), ("soft_bf16", dict(dtype="bfloat16"))):
  run = fo.real_step(size, "soft" if name.startswith("soft") else "hard", grouped=name.startswith("soft"), **kw)
  s = timed(run); res[name] = s
  print(f"{name}: {s*1e3:.1f} ms/step {b/s:.0f} ex/s MFU {flops/s/peak:.1%} (peak {peak/1e12:.0f} TFLOP/s)", flush=True)
try:
  import torch
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  print("torch", torch.__version__, dev, flush=True)
  # the peer at the same size, bf16 autocast (AMP); torch.compile if it works here
  for compile_ in (False, True):
    try:
      run = fo.torch_step(size, compile_=compile_, device=dev, amp=True)
      s = timed(run)
      print(f"torch_hard_amp{'_compiled' if compile_ else ''}: {s*1e3:.1f} ms/step {b/s:.0f} ex/s "
            f"(ours / torch step time {res['hard_bf16']/s:.2f})", flush=True)
    except Exception as e:
      print(f"torch{' compile' if compile_ else ''} failed: {str(e).splitlines()[0][:200]}", flush=True)
except ImportError:
  print("torch not installed (pip install -e .[bench])")
PY
python - $SMOKE <<'PY' 2>&1 | tee "$OUT/sharded.txt"
import sys, time
sys.path.insert(0, "benchmarks")
import jax
from mtl_jax import partitioning
import memory
size = memory.SMOKE if "--smoke" in sys.argv else dict(memory.PEER, batch=256)
n = jax.device_count()
for name, over in (("data_parallel", ()), ("fsdp", (("batch", "data"), ("embed", "data")))):
  steps, batch = memory.build("hard", 8, size, {"dtype": "bfloat16"}, 1)
  mesh = partitioning.make_mesh((n, 1))
  from mtl_jax.step.steps import Steps
  steps = Steps(steps.model, steps.tx, steps.task_kinds, mesh, partitioning.logical_axis_rules(over), 0,
                size["batch"], size["length"])
  state = steps.init_state()
  for i in range(4):
    if i == 1: t = time.perf_counter()
    state, m = steps.run_train_step(state, batch)
  jax.block_until_ready(m["loss"])
  s = (time.perf_counter() - t) / 3
  print(f"{name} on {n} device(s): {s*1e3:.1f} ms/step loss {float(m['loss']):.4f} "
        f"param bytes/device {partitioning.per_device_bytes(state.params)/1e6:.1f} MB", flush=True)
PY
echo "results in $OUT"
