"""Per-task gradients in ONE vectorised computation, and the combined update.

The batch is task-grouped (b rows of every task, task-major; weight-0 padding rows when T
does not divide B, which count nowhere: losses and counts are weighted means, and a task
with no real row has a zero gradient, left out by every method), so jax.vmap of the
gradient over the [T, B/T] row groups gives every task's gradient of every parameter at
about the FLOPs of one backward pass (each group backpropagates only its own rows), plus
T gradient-sized buffers. The shared parameters (everything but 'heads') get
sum_t alpha_t g_t with alpha from the method on the Gram matrix; the task-specific heads
get their plain gradients (of the equal-weighted loss). A sown penalty computed on a
group counts as part of that group's task objective.

Memory: T gradient copies of the shared parameters is 14 GB at BERT-base size and T=32. With
weighting.task_grads 'recompute' (the default past KEEP_UP_TO tasks and KEEP_BYTES) chunked.py
computes the Gram matrix in chunks of tasks and the update as the gradient of sum_t alpha_t l_t.

rep_grad: the gradients w.r.t. the shared representation (the trunk's output, through
the 'rep' perturbation of MultiTaskModel) instead: one forward, the heads' backward to
get the [T, B/T*L*D] representation gradients (positionally aligned across task groups, as
LibMTL's multi-input rep_grad), then one backward of the alpha-weighted losses.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from mtl_jax.weighting import base, chunked

TASK_SPECIFIC = base.TASK_SPECIFIC  # top-level param collections that are not shared


def gram(grads_T, shared) -> jax.Array:
  """G G^T over the shared leaves, leaf by leaf (no [T, P] concatenation)."""
  total = None
  for key in shared:
    for g in jax.tree.leaves(grads_T[key]):
      flat = g.reshape(g.shape[0], -1).astype(jnp.float32)
      part = jnp.einsum("ip,jp->ij", flat, flat, precision=jax.lax.Precision.HIGHEST)
      total = part if total is None else total + part
  return total


def _weigh(alpha, grads_T):
  return jax.tree.map(lambda g: jnp.tensordot(alpha.astype(g.dtype), g, 1), grads_T)


def context(loss_T, count_T, rng, step) -> base.Context:
  """The method's view of this step; its rng is apart from the dropout rng."""
  return base.Context(loss_T=jax.lax.stop_gradient(loss_T), count_T=count_T,
                      rng=jax.random.fold_in(rng, 1), step=step)


def groups(batch, num_tasks):
  """A task-major batch (B/T rows of each task) as [T, B/T] row groups."""
  return jax.tree.map(lambda x: x.reshape(num_tasks, x.shape[0] // num_tasks, *x.shape[1:]), batch)


def task_grads(objective: Callable, params, groups_T, num_tasks):
  """(grads [T, ...], aux [T, ...]) of objective(params, group, t) -> (loss, aux) on each task's own
  row group: one vmap, so each group backpropagates only its rows (~ one backward pass in all)."""
  return jax.vmap(jax.grad(objective, has_aux=True), in_axes=(None, 0, 0))(params, groups_T, jnp.arange(num_tasks))


KEEP_UP_TO = 8  # task_grads='auto' keeps the T per-task gradients up to this many tasks ...
KEEP_BYTES = 2 ** 30  # ... or while all T copies of the shared parameters' gradients fit in 1 GiB


def recomputes(method, num_tasks: int, shared_params) -> bool:
  """Whether the Gram matrix and the update come from chunks of tasks (chunked.py: at most 2 x CHUNK
  gradient copies, ~(C+1)/2 + 1 passes) rather than from all T per-task gradients kept at once:
  'recompute', or 'auto' when the T copies are both many and large (the extra passes cost time)."""
  mode = getattr(method, "task_grads", "auto")
  size = sum(x.size for x in jax.tree.leaves(shared_params))
  return mode == "recompute" or (mode == "auto" and num_tasks > KEEP_UP_TO and num_tasks * size * 4 > KEEP_BYTES)


def param_step(method, task_losses: Callable, params, batch, rng, wstate, step, num_tasks):
  """task_losses(params, batch, rng, grouped, rep=None) -> (loss_T, count_T, penalty).
  Returns (loss, aux, grads, new weighting state)."""
  def one(params, group, t):
    loss_T, count_T, penalty = task_losses(params, group, jax.random.fold_in(rng, t), False)
    return loss_T[t] + penalty, (loss_T[t], count_T[t], penalty)

  shared = [k for k in params if k not in TASK_SPECIFIC]
  if recomputes(method, num_tasks, [params[k] for k in shared]) and not isinstance(method, base.GradMethod):
    groups_T = groups(batch, num_tasks)
    gram_TT, (loss_T, count_T, penalty_T) = chunked.gram(one, params, groups_T, shared, num_tasks)
    alpha, new_state = method.combine(gram_TT, wstate, context(loss_T, count_T, rng, step))
    alpha = jax.lax.stop_gradient(alpha)
    equal = base.mean_present(base.Context(loss_T, count_T, rng, step))
    grads = chunked.update(one, params, groups_T, alpha, equal, shared, num_tasks)
    return _finish(loss_T, count_T, penalty_T.mean(), alpha, grads, new_state)
  grads_T, (loss_T, count_T, penalty_T) = task_grads(one, params, groups(batch, num_tasks), num_tasks)
  if isinstance(method, base.GradMethod):  # buffers of the per-task gradients (DB-MTL, MoCo, ExcessMTL)
    ctx = context(loss_T, count_T, rng, step)
    update, head_w, alpha, new_state = method.combine_grads({k: grads_T[k] for k in shared}, wstate, ctx)
    grads = {k: (update[k] if k in shared else _weigh(jax.lax.stop_gradient(head_w), v)) for k, v in grads_T.items()}
    return _finish(loss_T, count_T, penalty_T.mean(), jax.lax.stop_gradient(alpha), grads, new_state)
  alpha, new_state = method.combine(gram(grads_T, shared), wstate, context(loss_T, count_T, rng, step))
  alpha = jax.lax.stop_gradient(alpha)
  equal = base.mean_present(base.Context(loss_T, count_T, rng, step))  # heads: equal over the present tasks
  grads = {k: _weigh(alpha if k in shared else equal, v) for k, v in grads_T.items()}
  penalty = penalty_T.mean()
  return _finish(loss_T, count_T, penalty, alpha, grads, new_state)


def rep_step(method, task_losses: Callable, params, batch, rng, wstate, step, num_tasks, d_model):
  rep0 = jnp.zeros((*batch["input_ids"].shape, d_model), jnp.float32)
  (loss_T, count_T, penalty), vjp = jax.vjp(lambda p, r: task_losses(p, batch, rng, True, rep=r), params, rep0)
  zeros = jnp.zeros_like(loss_T)
  _, rep_T = vjp((jnp.ones_like(loss_T), zeros, jnp.zeros_like(penalty)))  # task t's rows: d l_t / d rep
  flat = rep_T.reshape(num_tasks, -1)
  gram_TT = jnp.einsum("ip,jp->ij", flat, flat, precision=jax.lax.Precision.HIGHEST)
  alpha, new_state = method.combine(gram_TT, wstate, context(loss_T, count_T, rng, step))
  alpha = jax.lax.stop_gradient(alpha)
  shared_grads, _ = vjp((alpha.astype(loss_T.dtype), zeros, jnp.ones_like(penalty)))
  head_grads, _ = vjp((base.mean_present(base.Context(loss_T, count_T, rng, step)).astype(loss_T.dtype), zeros,
                       jnp.zeros_like(penalty)))
  grads = {k: (head_grads[k] if k in TASK_SPECIFIC else v) for k, v in shared_grads.items()}
  return _finish(loss_T, count_T, penalty, alpha, grads, new_state)


def _finish(loss_T, count_T, penalty, alpha, grads, new_state):
  present = (count_T > 0).astype(loss_T.dtype)
  task_term = (loss_T * present).sum() / jnp.maximum(present.sum(), 1.0)  # reported: the equal-weighted loss
  aux = {"task_loss": loss_T, "task_count": count_T, "task_term": task_term, "penalty": penalty,
         "task_weight": alpha}
  return task_term + penalty, aux, grads, new_state
