"""What the optimizer alone costs per step at each strategy's parameter count.

Soft sharing owns T towers, so AdamW + clipping + the non-finite guard (the same
update `steps.Steps` runs, on a flat vector of that many parameters) pass over T x
the trunk every step, whatever the routing. This prints that update's time for the
parameter counts of hard and soft sharing at `strategy_cost.py`'s sizes, next to
hard's, to explain how much of soft / hard in `strategy_cost.py` is the optimizer.

  python benchmarks/optimizer_cost.py [--quick]
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_cpu_multi_thread_eigen=false"]).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from mtl_jax.step import optim  # noqa: E402
from mtl_jax.models.encoder import EncoderConfig  # noqa: E402
from mtl_jax.models.multitask import build_model  # noqa: E402
from mtl_jax.step.steps import dummy_batch, guarded_update  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strategy_cost import SIZES  # noqa: E402


def param_count(strategy: str, num_tasks: int, size: dict) -> int:
  cfg = EncoderConfig(d_model=size["d_model"], num_heads=size["num_heads"], mlp_dim=size["mlp_dim"],
                      num_layers=size["num_layers"], max_len=size["length"], vocab_size=size["vocab"])
  shapes = jax.eval_shape(build_model(cfg, strategy, [2] * num_tasks).init, jax.random.key(0),
                          dummy_batch(4, size["length"]))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def update_fn(tx):
  """The optimizer part of steps.Steps._train_step (its finiteness test + steps.guarded_update)."""
  def update(params, opt_state, grads):
    return guarded_update(tx, params, opt_state, grads, jnp.isfinite(optax.global_norm(grads)))
  return jax.jit(update, donate_argnums=(0, 1))


def main(quick: bool) -> None:
  size = SIZES["quick" if quick else "full"]
  tx, _ = optim.make_optimizer(1000)
  rows = [("hard", 2)] + [("soft", t) for t in (2, 8, 32)]
  counts = {row: param_count(*row, size) for row in rows}
  entries = {}
  for row, n in counts.items():
    params = {"w": jnp.ones((n,), jnp.float32)}
    entries[row] = [update_fn(tx), params, tx.init(params), {"w": jnp.full((n,), 1e-3, jnp.float32)}]
  best = {row: float("inf") for row in rows}
  for _ in range(8):  # interleaved rounds, minimum kept
    for row, e in entries.items():
      step, params, state, grads = e
      params, state = step(params, state, grads)
      jax.block_until_ready(params)
      start = time.perf_counter()
      for _ in range(3):
        params, state = step(params, state, grads)
      jax.block_until_ready(params)
      best[row] = min(best[row], (time.perf_counter() - start) / 3)
      e[1], e[2] = params, state
  print(f"jax {jax.__version__}, size {'quick' if quick else 'full'}: optimizer update per step")
  for row in rows:
    print(f"  {row[0]:<5} T={row[1]:<3} {counts[row]:>10,} params  {best[row] * 1e3:8.2f} ms  "
          f"({best[row] / best[('hard', 2)]:.1f} x hard's)")


if __name__ == "__main__":
  main("--quick" in sys.argv[1:])
