"""Framework overhead and the PyTorch peer, side by side in one run (examples/s).

At the peer configuration (d_model 256, 4 heads, 4 pre-LN layers, mlp 1024, 128 tokens,
batch 64, T=8 classification tasks, AdamW + global-norm clipping), on mixed batches:
  real_hard        the trainer's jitted step (steps.Steps: embedder, hard trunk, stacked heads)
  minimal_jax      a hand-written JAX transformer step of the same model (no flax, no gin,
                   no logical axes, no non-finite guard): what the framework costs
  real_soft        soft sharing on the grouped layout (towers vmapped over [T, B/T] groups)
  torch_hard       a hand-written PyTorch nn.TransformerEncoder multi-task loop (the peer)
  torch_soft       T PyTorch encoders, each on its task's B/T rows (the peer's soft sharing)
Ratios printed: real_hard / minimal_jax (target: within 5 %), real_hard / torch_hard,
real_soft / real_hard vs torch_soft / torch_hard (target <= 1.1 x in step time).
Timings: minimum over interleaved rounds (a shared 2-core box is noisy).

  python benchmarks/framework_overhead.py            # ~5 min on 2 idle cores
  python benchmarks/framework_overhead.py --smoke    # tiny sizes, a dry run
torch comes from the optional `bench` extra (pip install -e .[bench]); never a runtime dependency.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

PEER = dict(d_model=256, num_heads=4, mlp_dim=1024, num_layers=4, length=128, batch=64, vocab=2048, tasks=8)
SMOKE = dict(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, length=16, batch=16, vocab=128, tasks=4)


def make_batch(size, seed=0, grouped=False):
  rng = np.random.default_rng(seed)
  b, l, t = size["batch"], size["length"], size["tasks"]
  task = np.repeat(np.arange(t), b // t) if grouped else rng.integers(0, t, b)
  return {"input_ids": rng.integers(1, size["vocab"], (b, l)).astype(np.int32),
          "input_mask": np.ones((b, l), np.int32), "task_id": task.astype(np.int32),
          "label": rng.integers(0, 2, b).astype(np.int32), "score": np.zeros(b, np.float32),
          "tags": np.full((b, l), -1, np.int32), "weight": np.ones(b, np.float32)}


def tx():
  return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, b1=0.9, b2=0.98, weight_decay=0.01))


# ---- the real trainer step ----
def real_step(size, sharing="hard", grouped=False, **encoder_options):
  from mtl_jax.scale import partitioning
  from mtl_jax.step import steps as steps_lib
  from mtl_jax.models.encoder import EncoderConfig
  from mtl_jax.models.multitask import build_model
  cfg = EncoderConfig(d_model=size["d_model"], num_heads=size["num_heads"], mlp_dim=size["mlp_dim"],
                      num_layers=size["num_layers"], max_len=size["length"], vocab_size=size["vocab"],
                      **encoder_options)
  model = build_model(cfg, sharing, [2] * size["tasks"])
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = steps_lib.Steps(model, tx(), ["classification"] * size["tasks"], mesh, partitioning.logical_axis_rules(),
                          0, size["batch"], size["length"], grouped=grouped)
  state = steps.init_state()
  with jax.set_mesh(mesh):
    batch = steps.put_batch(make_batch(size, grouped=grouped))
    compiled = steps.train_step.lower(state, batch).compile()
  holder = {"state": state}

  def run():
    with jax.set_mesh(mesh):
      holder["state"], m = compiled(holder["state"], batch)
      jax.block_until_ready(m["loss"])
  return run


# ---- a minimal hand-written JAX step of the same model ----
def minimal_params(size, key):
  d, f, h, v, t, n = (size[k] for k in ("d_model", "mlp_dim", "num_heads", "vocab", "tasks", "num_layers"))
  ks = iter(jax.random.split(key, 8 * n + 4))
  dense = lambda shape: jax.random.normal(next(ks), shape, jnp.float32) * (2.0 / sum(shape)) ** 0.5
  layer = lambda: {"ln1": (jnp.ones(d), jnp.zeros(d)), "ln2": (jnp.ones(d), jnp.zeros(d)),
                   "qkv": dense((d, 3 * d)), "qkv_b": jnp.zeros(3 * d), "o": dense((d, d)), "o_b": jnp.zeros(d),
                   "wi": dense((d, f)), "wi_b": jnp.zeros(f), "wo": dense((f, d)), "wo_b": jnp.zeros(d)}
  return {"tok": jax.random.normal(next(ks), (v, d)) * 0.02, "pos": jax.random.normal(next(ks), (size["length"], d)) * 0.02,
          "layers": [layer() for _ in range(n)], "ln_f": (jnp.ones(d), jnp.zeros(d)),
          "head": dense((t, d, 2)), "head_b": jnp.zeros((t, 2))}


def _ln(x, p):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + 1e-6) * p[0] + p[1]


def minimal_loss(params, batch, num_heads):
  x = params["tok"][batch["input_ids"]] + params["pos"][None]
  mask = batch["input_mask"][:, None, None, :] > 0
  b, l, d = x.shape
  for p in params["layers"]:
    y = _ln(x, p["ln1"]) @ p["qkv"] + p["qkv_b"]
    q, k, v = (z.reshape(b, l, num_heads, d // num_heads) for z in jnp.split(y, 3, -1))
    s = jnp.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(d // num_heads)
    a = jax.nn.softmax(jnp.where(mask, s, -1e30), -1)
    x = x + jnp.einsum("bhqs,bshk->bqhk", a, v).reshape(b, l, d) @ p["o"] + p["o_b"]
    x = x + jax.nn.gelu(_ln(x, p["ln2"]) @ p["wi"] + p["wi_b"]) @ p["wo"] + p["wo_b"]
  m = batch["input_mask"][..., None].astype(x.dtype)
  pooled = (_ln(x, params["ln_f"]) * m).sum(1) / m.sum(1)
  logits = jnp.einsum("bd,bdc->bc", pooled, params["head"][batch["task_id"]]) + params["head_b"][batch["task_id"]]
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


def minimal_step(size):
  opt = tx()
  params = minimal_params(size, jax.random.key(0))
  holder = {"params": params, "opt": opt.init(params)}

  @jax.jit
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(minimal_loss)(params, batch, size["num_heads"])
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  batch = {k: jnp.asarray(v) for k, v in make_batch(size).items()}

  def run():
    holder["params"], holder["opt"], loss = step(holder["params"], holder["opt"], batch)
    jax.block_until_ready(loss)
  run()  # compile
  return run


# ---- the PyTorch peer ----
def torch_step(size, soft=False, compile_=False, device="cpu", amp=False):
  """amp: bf16 autocast (PyTorch AMP); device 'cuda' for the GPU check (benchmarks/gpu.sh)."""
  import torch
  torch.manual_seed(0)
  d, t = size["d_model"], size["tasks"]

  def encoder():
    layer = torch.nn.TransformerEncoderLayer(d, size["num_heads"], size["mlp_dim"], dropout=0.0,
                                             activation="gelu", batch_first=True, norm_first=True)
    return torch.nn.TransformerEncoder(layer, size["num_layers"], norm=torch.nn.LayerNorm(d),
                                       enable_nested_tensor=False)

  class Model(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.tok = torch.nn.Embedding(size["vocab"], d)
      self.pos = torch.nn.Parameter(torch.randn(size["length"], d) * 0.02)
      self.trunks = torch.nn.ModuleList([encoder() for _ in range(t if soft else 1)])
      self.head = torch.nn.Parameter(torch.randn(t, d, 2) * 0.05)
      self.head_b = torch.nn.Parameter(torch.zeros(t, 2))

    def forward(self, ids, task):
      x = self.tok(ids) + self.pos[None]
      if soft:  # grouped: task t's B/T rows through tower t
        rows = x.shape[0] // t
        x = torch.cat([self.trunks[i](x[i * rows:(i + 1) * rows]) for i in range(t)])
      else:
        x = self.trunks[0](x)
      pooled = x.mean(1)
      return torch.einsum("bd,bdc->bc", pooled, self.head[task]) + self.head_b[task]

  model = Model().to(device)
  fwd = torch.compile(model) if compile_ else model
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01)
  batch = make_batch(size, grouped=soft)
  ids, task, label = (torch.as_tensor(batch[k]).long().to(device) for k in ("input_ids", "task_id", "label"))

  def run():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
      loss = torch.nn.functional.cross_entropy(fwd(ids, task).float(), label)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if device == "cuda":
      torch.cuda.synchronize()
  run()
  return run


def interleaved_best(runs: dict, rounds: int, steps: int) -> dict:
  """{name: min over rounds of the mean step time}, rows interleaved so load drift hits every row alike."""
  best = {name: float("inf") for name in runs}
  for _ in range(rounds):
    for name, run in runs.items():
      start = time.perf_counter()
      for _ in range(steps):
        run()
      best[name] = min(best[name], (time.perf_counter() - start) / steps)
  return best


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=2, help="timed steps per round")
  parser.add_argument("--torch_compile", action="store_true", help="also torch.compile the peer")
  args = parser.parse_args(argv)
  size = SMOKE if args.smoke else PEER
  import torch
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); {os.cpu_count()} cpus; size {size}", flush=True)
  rows = {"real_hard": lambda: real_step(size), "minimal_jax": lambda: minimal_step(size),
          "real_soft": lambda: real_step(size, "soft", grouped=True),
          "torch_hard": lambda: torch_step(size), "torch_soft": lambda: torch_step(size, soft=True)}
  if args.torch_compile:
    rows["torch_hard_compiled"] = lambda: torch_step(size, compile_=True)
  runs = {}
  for name, make in rows.items():
    start = time.perf_counter()
    runs[name] = make()
    runs[name]()  # warm-up
    print(f"  built {name} in {time.perf_counter() - start:.1f} s", flush=True)
  best = interleaved_best(runs, args.rounds, args.steps)
  print("\nexamples/s (min step time over rounds):")
  for name, s in best.items():
    print(f"  {name:20s} {size['batch'] / s:8.1f} ex/s   {s * 1e3:8.1f} ms/step")
  r = lambda a, b: best[a] / best[b]
  print("\nratios (step time):")
  print(f"  real_hard / minimal_jax   {r('real_hard', 'minimal_jax'):.3f}   (target within 5 %: "
        f"{'MET' if abs(r('real_hard', 'minimal_jax') - 1) <= 0.05 else 'MISSED'})")
  print(f"  real_hard / torch_hard    {r('real_hard', 'torch_hard'):.3f}   (PyTorch speed / ours = "
        f"{r('real_hard', 'torch_hard'):.2f})")
  print(f"  real_soft / real_hard     {r('real_soft', 'real_hard'):.3f}   (target <= 1.1: "
        f"{'MET' if r('real_soft', 'real_hard') <= 1.1 else 'MISSED'})")
  print(f"  torch_soft / torch_hard   {r('torch_soft', 'torch_hard'):.3f}")
  if "torch_hard_compiled" in best:
    print(f"  real_hard / torch_hard_compiled {r('real_hard', 'torch_hard_compiled'):.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
