"""auto_lambda (Liu et al. 2022, Auto-Lambda): task weights lambda learnt by a bilevel look-ahead.

Each step, before the model update: take a virtual SGD step with the current weights,
theta' = theta - a * sum_t lambda_t g_t(theta) (g_t: task t's gradient on this batch), measure the
primary tasks' loss on a held-out batch at theta', and move lambda by Adam on its gradient
  d/dlambda_t L_held(theta') = -a * g_t(theta) . grad L_held(theta')
(the authors' code gets g_t . d by a finite difference of the training loss along d; here it is exact:
one jvp of the per-task losses along d, no per-task gradients). Then the real update with the new lambda.

The held-out batch is the PREVIOUS train batch, kept in TrainState: the authors' released code uses a
second shuffled stream of the training set for it (a different train batch, not a validation split),
and the previous batch is such a batch with no second input stream and an exact resume (it is in the
checkpoint). At the first step there is none and lambda does not move. The virtual step is plain SGD
(the authors add their SGD momentum and weight decay; our optimizer is Adam-family, whose update is not
a function of this gradient alone). Weights are not clipped, as in the authors' code.
Cost: ~2 forward + 3 backward passes a step (train vjp, held-out grad, jvp, the update reuses the vjp).
"""

from __future__ import annotations

from typing import Callable, Sequence

import gin
import jax
import jax.numpy as jnp
import optax

from mtl_jax.weighting import base


class AutoLambda(base.Method):
  kind = "bilevel"  # the step is the method's own (Steps._loss_and_grads calls `step`)

  def __init__(self, num_tasks: int, meta_lr: float, virtual_lr: float, init: float, primary: Sequence[int]):
    self.tx = optax.adam(meta_lr)
    self.virtual_lr, self.init_weight = virtual_lr, init
    self.primary_T = jnp.zeros((num_tasks,), jnp.float32).at[jnp.asarray(primary, jnp.int32)].set(1.0)
    self.example_batch = None

  def bind_batch(self, example_batch: dict) -> None:
    self.example_batch = example_batch

  def init(self, num_tasks):
    lam = jnp.full((num_tasks,), self.init_weight, jnp.float32)
    return {"lambda": lam, "adam": self.tx.init(lam)}

  def init_with_params(self, num_tasks, params):
    if self.example_batch is None:
      raise ValueError("weighting 'auto_lambda' keeps the previous train batch in its state and needs the batch "
                       "shapes: build it through steps.Steps (which calls bind_batch)")
    held = jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), jnp.asarray(x).dtype), self.example_batch)
    return {**self.init(num_tasks), "held": held, "has_held": jnp.zeros((), jnp.bool_)}

  def weights(self, state, ctx):
    raise ValueError("weighting 'auto_lambda' takes its own look-ahead step on the whole batch; it cannot be "
                     "microbatched: set microbatches.num=1")

  def step(self, task_losses: Callable, params, batch, rng, state, step):
    """task_losses(params, batch, rng) -> (loss_T, count_T, penalty). (loss, aux, grads, new state)."""
    (loss_T, count_T, penalty), vjp = jax.vjp(lambda p: task_losses(p, batch, rng), params)

    def grad_with(w_T):  # d/dtheta (sum_t w_t l_t + penalty), from the one forward pass
      return vjp((w_T.astype(loss_T.dtype), jnp.zeros_like(count_T), jnp.ones_like(penalty)))[0]

    lam = state["lambda"]
    ahead = jax.tree.map(lambda p, g: p - self.virtual_lr * g, params, grad_with(lam))

    def held_loss(p):
      l_T, c_T, _ = task_losses(p, state["held"], jax.random.fold_in(rng, 2))
      return jnp.sum(self.primary_T * (c_T > 0) * l_T)

    direction = jax.grad(held_loss)(ahead)
    _, gd_T = jax.jvp(lambda p: task_losses(p, batch, rng)[0], (params,), (direction,))  # g_t . d
    meta_grad = jax.lax.stop_gradient(-self.virtual_lr * gd_T)
    updates, adam = self.tx.update(meta_grad, state["adam"], lam)
    use = state["has_held"]
    new_lam = jnp.where(use, lam + updates, lam)
    adam = base.tree_where(use, adam, state["adam"])
    grads = grad_with(new_lam)
    task_term = (new_lam * loss_T).sum()
    aux = {"task_loss": loss_T, "task_count": count_T, "task_term": task_term, "penalty": penalty,
           "task_weight": new_lam}
    new_state = {"lambda": new_lam, "adam": adam, "held": dict(batch), "has_held": jnp.ones((), jnp.bool_)}
    return task_term + penalty, aux, grads, new_state


@base.register("auto_lambda")
@gin.configurable("auto_lambda", module="mtl_jax.weighting")
def auto_lambda(num_tasks: int, meta_lr: float = 1e-4, virtual_lr: float = 1e-3, init: float | None = None,
                primary: Sequence[int] | None = None) -> base.Method:
  """Auto-Lambda: task weights learnt by a look-ahead on the previous (held-out) batch.

  meta_lr: Adam's learning rate on lambda (authors: 1e-4). virtual_lr: the look-ahead's SGD step.
  init: every lambda_t at start (default 1/T: equal weighting's scale; the authors' 0.1 is on the sum).
  primary: the task indices whose held-out loss is minimised (default all: multi-task learning)."""
  for name, value in (("meta_lr", meta_lr), ("virtual_lr", virtual_lr)):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
      raise ValueError(f"weighting.auto_lambda.{name} must be a number > 0, got {value!r}")
  init = 1.0 / num_tasks if init is None else init
  if not isinstance(init, (int, float)) or isinstance(init, bool) or not init > 0:
    raise ValueError(f"weighting.auto_lambda.init must be a number > 0, got {init!r}")
  primary = list(range(num_tasks)) if primary is None else list(primary)
  if not primary or any(not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < num_tasks for t in primary):
    raise ValueError(f"weighting.auto_lambda.primary must be a non-empty list of task indices in [0, {num_tasks}), "
                     f"got {primary!r}")
  return AutoLambda(num_tasks, float(meta_lr), float(virtual_lr), float(init), primary)
