"""Cost of the TAG affinity hook: one measurement vs one train step, at T = 2, 4, 8 tasks.

A measurement makes T lookahead steps (every task's gradient of the shared params, one vmap, then
every task's loss at every lookahead point: T x T losses), so it costs about T + 1 forward-backward
passes; measured every N steps it adds ratio / N to the run. Real train step (hard sharing, the
real optimizer, a small encoder), one process, interleaved rounds, the minimum over rounds.

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
import numpy as np  # noqa: E402

from mtl_jax import optim, partitioning, steps as steps_lib  # noqa: E402
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
  args = p.parse_args(argv)
  print(f"size {SIZE}, backend {jax.default_backend()}; hook measured every {args.every} steps")
  print("  T   train step ms   affinity ms   ratio   run overhead at every=N")
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

    step_s, aff_s = np.inf, np.inf
    for _ in range(2):  # interleaved: a busy machine slows both alike
      step_s = min(step_s, timed(train, args.rounds))
      aff_s = min(aff_s, timed(measure, args.rounds))
    ratio = aff_s / step_s
    print(f"{t:3d}   {1e3 * step_s:13.2f}   {1e3 * aff_s:11.2f}   {ratio:5.2f}x  +{100 * ratio / args.every:.0f}%")
  return 0


if __name__ == "__main__":
  sys.exit(main())
