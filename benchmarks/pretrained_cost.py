"""Fine-tuning throughput of all-MiniLM-L6-v2: mtl_jax vs HF transformers + PyTorch, in one run.

Three rows, all doing the same work on the same batch (B x L random WordPiece ids, every
token real, 2 classes): MiniLM encoder forward (dropout as the checkpoint says, 0.1, or
--dropout) + a classification head on the mean-pooled states + cross-entropy + backward
+ AdamW (lr 2e-5, betas 0.9/0.999, eps 1e-8, weight decay 0.01 on every param), float32:

  mtl_jax       the REAL train step: mtl_jax.step.steps.Steps on build_model(cfg, 'hard', [2]),
                the checkpoint loaded through the starting_point seam (FromPretrained ->
                load.into_params), optax.adamw, a (1, 1) mesh on one CPU device. It also
                pays for what every run pays: the stacked task heads, per-task loss means,
                the penalties collection, the global gradient norm and the non-finite guard.
  minimal_jax   a hand-written jitted step over the same flax modules (Embedder +
                TransformerLayer x 6, the same loaded weights) + nn.Dense head + plain
                softmax cross-entropy + optax.adamw: XLA:CPU without our framework.
  torch         transformers.AutoModel.from_pretrained(dir, add_pooling_layer=False) + a
                torch.nn.Linear head, torch.optim.AdamW, model.train(); torch's default
                thread count (printed).

Timed windows of --steps steps (default one: short windows sample a bursty shared
machine alike) alternate between the rows, the first row rotating each round, so machine
load hits all alike; --warmup steps per row (after XLA compilation) are
not timed. examples/s = batch / median(seconds per step over the windows); the ratios are
printed from the medians, from each row's fastest window (what survives a busy machine),
and as the median over rounds of the ratio within a round (windows adjacent in time).
Without torch/transformers only the JAX rows run (pip install -e '.[bench]').

  python benchmarks/pretrained_cost.py --quick          # ~2 min on 2 CPU cores (1 min of it XLA compiles)
  python benchmarks/pretrained_cost.py                  # batch 32 x 64, 12 one-step windows per row (~3 min)
  python benchmarks/pretrained_cost.py --dropout 0      # both sides without dropout
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from mtl_jax.scale import partitioning  # noqa: E402
from mtl_jax.run import starting_point
from mtl_jax.step import steps as steps_lib  # noqa: E402
from mtl_jax.models.encoder import EncoderConfig, Embedder, TransformerLayer  # noqa: E402
from mtl_jax.models.multitask import build_model  # noqa: E402
from mtl_jax.pretrained import load, settings  # noqa: E402

NUM_CLASSES = 2
LR, BETAS, EPS, WEIGHT_DECAY = 2e-5, (0.9, 0.999), 1e-8, 0.01


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", default="all-MiniLM-L6-v2", help="named model or HF-layout directory")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--steps", type=int, default=None, help="steps per timed window (default 1)")
  parser.add_argument("--rounds", type=int, default=None, help="timed windows per row (default 12; --quick 5)")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps per row before timing")
  parser.add_argument("--dropout", type=float, default=None, help="default: the checkpoint's hidden_dropout_prob")
  parser.add_argument("--quick", action="store_true", help="fewer, shorter windows")
  parser.add_argument("--no_torch", action="store_true", help="only the JAX rows")
  args = parser.parse_args(argv)
  args.steps = args.steps or 1
  args.rounds = args.rounds or (5 if args.quick else 12)
  return args


def make_batch(batch_size: int, length: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  batch = steps_lib.dummy_batch(batch_size, length)  # every token real (input_mask all ones)
  batch["input_ids"] = rng.integers(1000, vocab, (batch_size, length)).astype(np.int32)
  batch["input_ids"][:, 0] = 101  # [CLS]
  batch["label"] = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
  return batch


def adamw():
  return optax.adamw(LR, b1=BETAS[0], b2=BETAS[1], eps=EPS, weight_decay=WEIGHT_DECAY)


class MtlJax:
  """The real train step (steps.Steps) on the hard-sharing model from the checkpoint."""

  name = "mtl_jax"

  def __init__(self, start: starting_point.FromPretrained, cfg: EncoderConfig, batch: dict, seed: int = 0):
    model = build_model(cfg, "hard", [NUM_CLASSES])
    self.mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
    b, l = batch["input_ids"].shape
    self.steps = steps_lib.Steps(model, adamw(), ["classification"], self.mesh, partitioning.logical_axis_rules(),
                                 seed, b, l)
    self.state = start.init_state(self.steps)
    with jax.set_mesh(self.mesh):
      self.batch = self.steps.put_batch(batch)
      self.step = self.steps.train_step.lower(self.state, self.batch).compile()

  def run(self, n: int) -> float:
    with jax.set_mesh(self.mesh):
      for _ in range(n):
        self.state, metrics = self.step(self.state, self.batch)
      return float(jax.block_until_ready(metrics)["loss"])


class Encoder(nn.Module):
  """Our encoder modules without the multi-task framework: embeddings, the layers, a Dense head."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, input_ids, mask, deterministic: bool = True):
    x = Embedder(self.config, name="embedder")(input_ids, deterministic)
    for k in range(self.config.num_layers):
      x = TransformerLayer(self.config, name=f"layer_{k}")(x, mask, deterministic)
    m = mask[..., None].astype(x.dtype)
    pooled = (x * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    return nn.Dense(NUM_CLASSES, name="head")(pooled), pooled


class MinimalJax:
  """A hand-written jitted train step over the same flax modules and weights."""

  name = "minimal_jax"

  def __init__(self, ckpt_params: dict, cfg: EncoderConfig, batch: dict, seed: int = 0):
    self.model, tx = Encoder(cfg), adamw()
    self.ids, self.mask = jnp.asarray(batch["input_ids"]), jnp.asarray(batch["input_mask"])
    self.labels = jnp.asarray(batch["label"])
    params = nn.meta.unbox(self.model.init(jax.random.key(seed), self.ids, self.mask)["params"])
    self.params = load.into_params(params, ckpt_params)
    self.opt_state, self.count, key = tx.init(self.params), jnp.zeros((), jnp.int32), jax.random.key(seed)

    def step(params, opt_state, count, ids, mask, labels):
      def loss_fn(p):
        logits, _ = self.model.apply({"params": p}, ids, mask, False, rngs={"dropout": jax.random.fold_in(key, count)})
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, count + 1, loss

    args = (self.params, self.opt_state, self.count, self.ids, self.mask, self.labels)
    self.step = jax.jit(step, donate_argnums=(0, 1, 2)).lower(*args).compile()

  def pooled(self, params) -> np.ndarray:
    """Deterministic mean-pooled encoder states (for the parity line)."""
    return np.asarray(self.model.apply({"params": params}, self.ids, self.mask, True)[1])

  def run(self, n: int) -> float:
    for _ in range(n):
      self.params, self.opt_state, self.count, loss = self.step(
          self.params, self.opt_state, self.count, self.ids, self.mask, self.labels)
    return float(jax.block_until_ready(loss))


class Torch:
  """HF transformers BertModel + a Linear head, torch.optim.AdamW."""

  name = "torch"

  def __init__(self, path, dropout: float | None, batch: dict, seed: int = 0):
    import torch
    import transformers
    torch.manual_seed(seed)
    transformers.logging.set_verbosity_error()  # the load report lists the pooler we leave out
    transformers.logging.disable_progress_bar()
    extra = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    self.torch = torch
    self.encoder = transformers.AutoModel.from_pretrained(str(path), add_pooling_layer=False, dtype=torch.float32,
                                                          **extra)
    self.head = torch.nn.Linear(self.encoder.config.hidden_size, NUM_CLASSES)
    params = list(self.encoder.parameters()) + list(self.head.parameters())
    self.opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    self.ids = torch.as_tensor(batch["input_ids"], dtype=torch.long)
    self.mask = torch.as_tensor(batch["input_mask"], dtype=torch.long)
    self.labels = torch.as_tensor(batch["label"], dtype=torch.long)
    self.attn = getattr(self.encoder.config, "_attn_implementation", "?")

  def pooled(self) -> np.ndarray:
    self.encoder.eval()
    with self.torch.no_grad():
      h = self.encoder(input_ids=self.ids, attention_mask=self.mask).last_hidden_state
      m = self.mask[..., None].float()
      out = ((h * m).sum(1) / m.sum(1).clamp(min=1.0)).numpy()
    self.encoder.train()
    return out

  def run(self, n: int) -> float:
    F = self.torch.nn.functional
    self.encoder.train()
    for _ in range(n):
      self.opt.zero_grad(set_to_none=True)
      h = self.encoder(input_ids=self.ids, attention_mask=self.mask).last_hidden_state
      m = self.mask[..., None].float()
      loss = F.cross_entropy(self.head((h * m).sum(1) / m.sum(1).clamp(min=1.0)), self.labels)
      loss.backward()
      self.opt.step()
    return loss.item()


def torch_available() -> bool:
  try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
  except ImportError:
    return False
  return True


def load_line() -> str:
  one, five, fifteen = os.getloadavg()
  return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cpus)"


def run(args) -> dict:
  start = starting_point.FromPretrained(settings.Pretrained(checkpoint=args.checkpoint, dropout_rate=args.dropout))
  cfg = start.encoder_config(start.checkpoint.config["vocab_size"])
  if args.length > cfg.max_len:
    raise SystemExit(f"--length {args.length} > the checkpoint's {cfg.max_len} positions")
  batch = make_batch(args.batch_size, args.length, cfg.vocab_size)
  print(f"{args.checkpoint} ({start.checkpoint.path}): d_model {cfg.d_model}, {cfg.num_layers} layers, "
        f"{cfg.num_heads} heads, mlp {cfg.mlp_dim}, vocab {cfg.vocab_size}, dropout {cfg.dropout_rate}, "
        f"pooling {cfg.pooling}\nbatch {args.batch_size} x {args.length} tokens, float32, AdamW lr {LR}; "
        f"{args.rounds} timed windows of {args.steps} steps per row after {args.warmup} warm-up steps")
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} (1 device), "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f"at start: {load_line()}", flush=True)

  rows, compile_s = [], {}
  t = time.perf_counter()
  rows.append(MtlJax(start, cfg, batch))
  compile_s["mtl_jax"] = time.perf_counter() - t
  ckpt_params = start.checkpoint.params()
  t = time.perf_counter()
  rows.append(MinimalJax(ckpt_params, cfg, batch))
  compile_s["minimal_jax"] = time.perf_counter() - t
  parity = None
  if args.no_torch:
    print("torch row skipped (--no_torch)")
  elif not torch_available():
    print("torch/transformers not installed: JAX rows only (pip install -e '.[bench]' for the torch row)")
  else:
    import torch
    import transformers
    torch_row = Torch(start.checkpoint.path, args.dropout, batch)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"torch.get_num_threads() = {torch.get_num_threads()} (default), "
          f"attention implementation {torch_row.attn!r}")
    parity = float(np.abs(rows[1].pooled(rows[1].params) - torch_row.pooled()).max())
    rows.append(torch_row)
  print("set-up + XLA compile: " + ", ".join(f"{k} {v:.1f} s" for k, v in compile_s.items()))
  if parity is not None:
    print(f"parity before training (dropout off): max |mean-pooled state, ours - HF| = {parity:.2e}")

  first = {row.name: row.run(args.warmup) for row in rows}  # warm-up, not timed
  print("loss after warm-up: " + ", ".join(f"{k} {v:.4f}" for k, v in first.items()), flush=True)
  per_step = {row.name: [] for row in rows}
  for r in range(args.rounds):
    order = rows[r % len(rows):] + rows[:r % len(rows)]
    for row in order:
      t = time.perf_counter()
      row.run(args.steps)
      per_step[row.name].append((time.perf_counter() - t) / args.steps)
    print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1] * 1e3:.0f} ms" for k, v in per_step.items()),
          flush=True)
  print(f"at end: {load_line()}")
  return per_step


def report(per_step: dict, args) -> None:
  med = {k: statistics.median(v) for k, v in per_step.items()}
  eps = {k: args.batch_size / v for k, v in med.items()}
  print(f"\n{'row':<13} {'examples/s':>10} {'ms/step (median)':>17} {'min':>7} {'max':>7}")
  for k, v in per_step.items():
    print(f"{k:<13} {eps[k]:>10.1f} {med[k] * 1e3:>17.0f} {min(v) * 1e3:>7.0f} {max(v) * 1e3:>7.0f}")
  best = {k: args.batch_size / min(v) for k, v in per_step.items()}
  paired = lambda a, b: statistics.median(tb / ta for ta, tb in zip(per_step[a], per_step[b]))
  print(f"\nexamples/s ratios          median  fastest window  per-round median")
  pairs = [("mtl_jax", "torch", "> 1: mtl_jax faster"), ("minimal_jax", "torch", "XLA:CPU vs PyTorch, no framework"),
           ("mtl_jax", "minimal_jax", "our framework's overhead")]
  for a, b, note in pairs:
    if a in eps and b in eps:
      print(f"{a + ' / ' + b:<26} {eps[a] / eps[b]:>5.2f}  {best[a] / best[b]:>14.2f}  {paired(a, b):>16.2f}"
            f"   ({note})")


if __name__ == "__main__":
  ARGS = parse(sys.argv[1:])
  report(run(ARGS), ARGS)
