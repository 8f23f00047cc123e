"""Cost of the TAG affinity hook: one measurement vs one train step, at T = 2, 4, 8 tasks.

A measurement takes every task's gradient of the shared params (one vmap over [T, cap] task groups:
about one backward pass) and every task's loss at each of the T lookahead points (T forwards), so it
costs about 1 + T/3 train steps; measured every N steps it adds ratio / N to the run. The 'one-hot'
column is the previous way, kept here for the comparison: gradients by a vmap over one-hot task
weights of the whole batch's loss (T full backward passes). Real train step (hard sharing, the real
optimizer, a small encoder), one process, interleaved rounds, the minimum over rounds.

  python benchmarks/affinity_cost.py              # ~1 min on 2 CPU cores
  python benchmarks/affinity_cost.py --tasks 2,4,8,16 --every 10
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from mtl_jax.step import optim, steps as steps_lib  # noqa: E402
from mtl_jax.scale import partitioning
from mtl_jax.models.encoder import EncoderConfig  # noqa: E402
from mtl_jax.models.multitask import build_model  # noqa: E402
from mtl_jax.taskemb import affinity  # noqa: E402

SIZE = dict(d_model=64, num_heads=4, mlp_dim=128, num_layers=2, batch=32, length=32, vocab=512)


class _Context:
  def __init__(self, steps, t, model_dir):
    self.steps, self.task_names, self.lead, self.model_dir, self.layout = steps, [f"t{i}" for i in range(t)], \
        False, model_dir, "mixed"


def build(t: int):
  s = SIZE
  cfg = EncoderConfig(d_model=s["d_model"], num_heads=s["num_heads"], mlp_dim=s["mlp_dim"], num_layers=s["num_layers"],
                      max_len=s["length"], dropout_rate=0.0, vocab_size=s["vocab"])
  tx, _ = optim.make_optimizer(1000)
  steps = steps_lib.Steps(build_model(cfg, "hard", [2] * t), tx, ["classification"] * t,
                          partitioning.make_mesh((1, 1), devices=jax.devices()[:1]), partitioning.logical_axis_rules(),
                          0, s["batch"], s["length"])
  rng = np.random.default_rng(0)
  batch = steps_lib.dummy_batch(s["batch"], s["length"])
  batch["input_ids"] = rng.integers(1, s["vocab"], size=batch["input_ids"].shape).astype(np.int32)
  batch["task_id"] = (np.arange(s["batch"]) % t).astype(np.int32)
  batch["label"] = rng.integers(0, 2, size=s["batch"]).astype(np.int32)
  return steps, batch


def onehot_measure(steps, t):
  """The hook's measurement with per-task gradients by a vmap over one-hot task weights (T backward passes)."""
  def measure(state, batch):
    params, mask = state.params, affinity.shared_mask(state.params)
    before, count = affinity.task_losses(steps.model, steps.task_kinds, t, params, batch)

    def step_on(onehot):
      grad = jax.grad(lambda p: onehot @ affinity.task_losses(steps.model, steps.task_kinds, t, p, batch)[0])(params)
      update, _ = steps.tx.update(grad, state.opt_state, params)
      update = jax.tree.map(lambda u, m: u if m else jnp.zeros_like(u), update, mask)
      return affinity.task_losses(steps.model, steps.task_kinds, t, optax.apply_updates(params, update), batch)[0]

    return affinity.affinity_from(jax.vmap(step_on)(jnp.eye(t)), before, count)
  return jax.jit(measure)


def timed(fn, rounds):
  fn()  # compile
  best = np.inf
  for _ in range(rounds):
    tick = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - tick)
  return best


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--tasks", default="2,4,8")
  p.add_argument("--every", type=int, default=10)
  p.add_argument("--rounds", type=int, default=10)
  p.add_argument("--no_onehot", action="store_true", help="skip the one-hot (previous) measurement")
  args = p.parse_args(argv)
  print(f"size {SIZE}, backend {jax.default_backend()}; hook measured every {args.every} steps")
  print("  T   train step ms   affinity ms   ratio   run overhead at every=N   one-hot ms   one-hot ratio   agree")
  for t in (int(x) for x in args.tasks.split(",")):
    steps, batch = build(t)
    state = steps.init_state()
    hook = affinity.AffinityHook(_Context(steps, t, "/nonexistent"), every=1)
    hold = {"state": state}

    def train():
      hold["state"], m = steps.run_train_step(hold["state"], batch)
      jax.block_until_ready(m["loss"])

    def measure():
      with jax.set_mesh(steps.mesh):
        jax.block_until_ready(hook._measure(hold["state"], steps.put_batch(batch)))

    old = onehot_measure(steps, t)

    def measure_onehot():
      with jax.set_mesh(steps.mesh):
        jax.block_until_ready(old(hold["state"], steps.put_batch(batch)))

    step_s, aff_s, old_s = np.inf, np.inf, np.inf
    for _ in range(2):  # interleaved: a busy machine slows all alike
      step_s = min(step_s, timed(train, args.rounds))
      aff_s = min(aff_s, timed(measure, args.rounds))
      if not args.no_onehot:
        old_s = min(old_s, timed(measure_onehot, args.rounds))
    agree = np.nan
    if not args.no_onehot:  # the same Z both ways
      with jax.set_mesh(steps.mesh):
        z_new = np.asarray(jax.device_get(hook._measure(hold["state"], steps.put_batch(batch))[0]))
        z_old = np.asarray(jax.device_get(old(hold["state"], steps.put_batch(batch))[0]))
      agree = float(np.abs(z_new - z_old).max())
    ratio = aff_s / step_s
    print(f"{t:3d}   {1e3 * step_s:13.2f}   {1e3 * aff_s:11.2f}   {ratio:5.2f}x  +{100 * ratio / args.every:.0f}%"
          f"{'':20s}{1e3 * old_s:10.2f}   {old_s / step_s:12.2f}x   max|dZ| {agree:.1e}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
