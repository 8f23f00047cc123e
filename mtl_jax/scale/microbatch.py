"""Gradient accumulation inside the jitted step: N sequential microbatches, one update.

gin `microbatches.num = N` splits each global batch into N microbatches run one after
another by `jax.lax.scan` (activation memory of B/N rows, one optimizer update per batch).
The result is the unsplit batch's loss and gradient (equal up to float summation order):
the loss is sum_t w_t S_t / C_t + penalty, where S_t sums task t's example losses and
C_t counts its examples over the WHOLE batch, so each microbatch contributes
sum_t (w_t / C_t) S_t^(m) + penalty^(m) / N. The per-task counts C_t are known before any
forward pass; weights w_t that depend on this batch's task losses (uw, dwa, gls, famo)
need one extra forward-only scan first (LOSS_FREE methods skip it). Penalties that depend
on the batch's activations (sluice's orthogonality) are averaged over microbatches, which
is not exactly the unsplit value. Gradient weighting methods combine per-task gradients
of task-grouped batches and are refused with N > 1.

Microbatch m holds rows m, m+N, m+2N, ... (strided): each device keeps its own rows (no
communication), and a task-grouped batch (B/T rows per task, task-major) stays grouped.
Dropout randomness is fold_in(step rng, m): a resumed run draws the same masks.
"""

from __future__ import annotations

import gin
import jax
import jax.numpy as jnp

LOSS_FREE = ("equal", "examples", "static", "rlw")  # weights from counts / rng / constants, not this batch's losses


@gin.configurable("microbatches")
def configured(num: int = 1) -> int:
  if not isinstance(num, int) or isinstance(num, bool) or num < 1:
    raise ValueError(f"microbatches.num must be a positive int, got {num!r}; set --gin.microbatches.num=<int>")
  return num


def check(num: int, batch_size: int, num_tasks: int, grouped: bool, weighting) -> None:
  """One-line errors for combinations that cannot be split exactly."""
  if num == 1:
    return
  if weighting.kind != "loss":
    raise ValueError(f"microbatches.num={num} cannot be used with the {weighting.kind} weighting {weighting.name!r} "
                     "(it needs the whole batch at once); set microbatches.num=1 "
                     "or use a loss weighting method")
  rows = batch_size // num_tasks if grouped else batch_size
  if batch_size % num or (grouped and rows % num):
    what = f"rows per task ({rows})" if grouped else f"BATCH_SIZE={batch_size}"
    raise ValueError(f"microbatches.num={num} does not divide the {what}; pick a divisor of it")


def split(batch, num: int):
  """[B, ...] leaves -> [num, B/num, ...]; microbatch m = rows m::num."""
  def one(x):
    x = x.reshape(x.shape[0] // num, num, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(one, batch)


def accumulate(example_losses, params, batch, rng, num: int, num_tasks: int, weights_for):
  """example_losses(params, microbatch, rng) -> (loss [b], penalty);
  weights_for(task_loss_T or None, count_T) -> w_T (None: the method needs no losses).
  Returns (task_loss_T, count_T, penalty, grads), exactly the unsplit batch's
  sum_t w_t l_t + penalty and its gradient (up to summation order)."""
  micro = split(batch, num)
  index = jnp.arange(num)
  sums = lambda loss_b, mb: jax.ops.segment_sum(loss_b * mb["weight"], mb["task_id"], num_segments=num_tasks)
  count_T = jax.ops.segment_sum(batch["weight"], batch["task_id"], num_segments=num_tasks)
  denom_T = jnp.maximum(count_T, 1.0)
  weight_T = weights_for(None, count_T)
  if weight_T is None:  # this batch's losses first (a forward-only scan)
    def forward(total_T, xs):
      mb, m = xs
      loss_b, _ = example_losses(params, mb, jax.random.fold_in(rng, m))
      return total_T + sums(loss_b, mb), None
    total_T, _ = jax.lax.scan(forward, jnp.zeros((num_tasks,), jnp.float32), (micro, index))
    weight_T = weights_for(total_T / denom_T, count_T)
  scale_T = jax.lax.stop_gradient(weight_T) / denom_T

  def body(carry, xs):
    grads, total_T, penalty_sum = carry
    mb, m = xs
    def objective(p):
      loss_b, penalty = example_losses(p, mb, jax.random.fold_in(rng, m))
      part_T = sums(loss_b, mb)
      return (scale_T * part_T).sum() + penalty / num, (part_T, penalty)
    (_, (part_T, penalty)), g = jax.value_and_grad(objective, has_aux=True)(params)
    grads = jax.tree.map(lambda a, b: a + b.astype(a.dtype), grads, g)
    return (grads, total_T + part_T, penalty_sum + penalty), None

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  init = (zeros, jnp.zeros((num_tasks,), jnp.float32), jnp.zeros((), jnp.float32))
  (grads, total_T, penalty_sum), _ = jax.lax.scan(body, init, (micro, index))
  grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
  return total_T / denom_T, count_T, penalty_sum / num, grads
