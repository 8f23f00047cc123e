"""Train state, sharded init, and the pure jitted train/eval steps.

train_step(state, batch) -> (state, metrics) is jitted once with explicit in/out
shardings and the state donated. Dropout randomness is fold_in(seed, step), so a
resumed run draws exactly the same randomness as an uninterrupted one. The task
weighting (mtl_jax/weighting/) runs inside the step: a loss method weights the
per-task losses; a gradient method combines per-task gradients (task-grouped batches).
With gin `microbatches.num = N` the step accumulates the gradient of N sequential
microbatches (jax.lax.scan, mtl_jax/scale/microbatch.py): the unsplit batch's loss and update.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl_jax import heads as heads_lib
from mtl_jax.input import packing
from mtl_jax.step import losses
from mtl_jax.scale import microbatch, partitioning
from mtl_jax import weighting as weighting_lib
from mtl_jax.weighting import gradients as weighting_grads


class TrainState:
  """step, params, opt_state, and the weighting method's state (a dict, {} for most).

  A pytree whose children are exactly (step, params, opt_state) when the weighting keeps
  no state, so checkpoints written before weighting existed restore unchanged."""
  FIELDS = ("step", "params", "opt_state")

  def __init__(self, step, params, opt_state, weighting=None):
    self.step, self.params, self.opt_state = step, params, opt_state
    self.weighting = weighting if weighting is not None else {}

  def replace(self, **changes) -> "TrainState":
    fields = {name: getattr(self, name) for name in (*self.FIELDS, "weighting")}
    return TrainState(**{**fields, **changes})

  def _children(self):
    names = self.FIELDS + (("weighting",) if _has_state(self.weighting) else ())
    return [(jax.tree_util.GetAttrKey(n), getattr(self, n)) for n in names]


def _has_state(weighting) -> bool:
  return not (weighting is None or (isinstance(weighting, dict) and not weighting))


jax.tree_util.register_pytree_with_keys(
    TrainState, lambda s: (s._children(), None), lambda _, children: TrainState(*children),
    lambda s: ([c for _, c in s._children()], None))


def dummy_batch(batch_size: int, length: int) -> dict[str, np.ndarray]:
  return {
      "input_ids": np.zeros((batch_size, length), np.int32),
      "input_mask": np.ones((batch_size, length), np.int32),
      "task_id": np.zeros((batch_size,), np.int32),
      "label": np.zeros((batch_size,), np.int32),
      "score": np.zeros((batch_size,), np.float32),
      "tags": np.full((batch_size, length), -1, np.int32),
      "weight": np.ones((batch_size,), np.float32),
      "token_type_ids": np.zeros((batch_size, length), np.int32),
  }


def with_token_types(batch) -> dict:
  """The batch with 'token_type_ids' (zeros: one segment) when a hand-built batch has none."""
  batch = dict(batch)
  if "token_type_ids" not in batch:
    batch["token_type_ids"] = np.zeros(np.shape(batch["input_ids"]), np.int32)
  return batch


def guarded_update(tx: optax.GradientTransformation, params, opt_state, grads, finite):
  """The optax update, applied only if `finite`: a non-finite loss or gradient never
  reaches the state (old params and optimizer state are kept)."""
  def apply(operands):
    params, opt_state = operands
    updates, new_opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_opt_state
  # a branch, not a select over every param and moment (that costs one more pass over them)
  return jax.lax.cond(finite, apply, lambda operands: operands, (params, opt_state))


class Steps:
  """Builds the sharded state and the jitted steps for one model/optimizer/mesh."""

  def __init__(self, model: nn.Module, tx: optax.GradientTransformation, task_kinds: Sequence[str],
               mesh, rules, seed: int, batch_size: int, length: int, grouped: bool = False,
               weighting: weighting_lib.Method | None = None, microbatches: int | None = None):
    """grouped: train batches hold B/T rows of every task (the 'grouped' layout), which
    lets soft sharing run its towers without per-example weight gathers and gradient
    weightings take per-task gradients. weighting: default the gin-configured method.
    microbatches: gradient accumulation steps per batch (default gin `microbatches.num`)."""
    self.model, self.tx, self.mesh, self.rules = model, tx, mesh, rules
    self.grouped = bool(grouped)
    self.task_kinds, self.seed = tuple(task_kinds), seed
    self.num_tasks = len(self.task_kinds)
    self.weighting = weighting or weighting_lib.configured(self.num_tasks)
    if self.weighting.kind == "gradient" and not self.grouped:
      raise ValueError(f"weighting {self.weighting.name!r} combines per-task gradients and needs task-grouped "
                       "batches; include gin/mixing/grouped.gin (any BATCH_SIZE: task groups are padded)")
    self.microbatches = microbatch.configured() if microbatches is None else microbatch.configured(microbatches)
    microbatch.check(self.microbatches, batch_size, self.num_tasks, self.grouped, self.weighting)
    packing.check(model.config, self.task_kinds)  # packed rows: a layout / head that cannot, refused here
    example = dummy_batch(batch_size, length)
    self.weighting.bind_batch(example)  # a method that keeps a batch in its state sizes it (auto_lambda)

    def init_boxed(rng):  # placement comes from out_shardings below (init's forward pass is dead code)
      params = model.init(rng, example)["params"]
      return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                        weighting=self.weighting.init_with_params(self.num_tasks, params))

    boxed = jax.eval_shape(init_boxed, jax.random.key(seed))
    self.state_shardings = partitioning.logical_shardings(boxed, mesh, rules)
    self.abstract_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        nn.meta.unbox(boxed), self.state_shardings)
    self._init = jax.jit(lambda rng: nn.meta.unbox(init_boxed(rng)), out_shardings=self.state_shardings)
    bs = self.batch_sharding = partitioning.batch_sharding(mesh)
    self.batch_shardings = jax.tree.map(lambda _: bs, example)
    self.train_step = jax.jit(self._train_step, in_shardings=(self.state_shardings, bs),  # any batch keys (packed)
                              out_shardings=(self.state_shardings, partitioning.replicated(mesh)),
                              donate_argnums=(0,))
    self.predict_step = jax.jit(self._predict_step, in_shardings=(self.state_shardings.params, self.batch_shardings),
                                out_shardings=partitioning.replicated(mesh))

  def init_state(self) -> TrainState:
    with jax.set_mesh(self.mesh):
      return self._init(jax.random.key(self.seed))

  def _example_losses(self, params, batch, rng, grouped, rep=None):
    """(loss [B] of each example, sown penalty); `rep` perturbs the trunk's output (its
    gradient is the representation gradient, for rep_grad)."""
    variables = {"params": params} if rep is None else {"params": params, "perturbations": {"rep": rep}}
    with nn.logical_axis_rules(self.rules):  # activation constraints need rules + jax.set_mesh
      out, aux = self.model.apply(variables, batch, deterministic=False, grouped=grouped,
                                  rngs={"dropout": rng}, mutable=["penalties"])
    penalty = sum((jnp.sum(p) for p in jax.tree.leaves(aux.get("penalties", {}))), jnp.zeros(()))
    return losses.example_losses(out, batch, self.task_kinds), penalty

  def _task_losses(self, params, batch, rng, grouped, rep=None):
    """(per-task mean loss [T], examples per task [T], sown penalty)."""
    loss_B, penalty = self._example_losses(params, batch, rng, grouped, rep)
    task_loss_T, count_T = losses.per_task_mean(loss_B, batch["weight"], batch["task_id"], self.num_tasks)
    return task_loss_T, count_T, penalty

  def _microbatched(self, params, batch, rng, wstate, step):
    """A loss method over `self.microbatches` accumulated microbatches (mtl_jax/scale/microbatch.py)."""
    def weights_for(loss_T, count_T):
      if loss_T is None and self.weighting.name not in microbatch.LOSS_FREE:
        return None
      loss_T = jnp.zeros_like(count_T) if loss_T is None else loss_T
      return self.weighting.weights(wstate, weighting_grads.context(loss_T, count_T, rng, step))[0]
    example_losses = lambda p, mb, r: self._example_losses(p, mb, r, self.grouped)
    task_loss_T, count_T, penalty, grads = microbatch.accumulate(
        example_losses, params, batch, rng, self.microbatches, self.num_tasks, weights_for)
    weight_T, wstate = self.weighting.weights(wstate, weighting_grads.context(task_loss_T, count_T, rng, step))
    task_term = losses.weighted_task_term(weight_T, task_loss_T)
    aux = {"task_loss": task_loss_T, "task_count": count_T, "task_term": task_term, "penalty": penalty,
           "task_weight": weight_T}
    return task_term + penalty, aux, grads, wstate

  def _loss(self, params, batch, rng, wstate, step):
    """A loss method: its weights (constants) times the per-task losses, plus penalties."""
    task_loss_T, count_T, penalty = self._task_losses(params, batch, rng, self.grouped)
    ctx = weighting_grads.context(task_loss_T, count_T, rng, step)
    weight_T, wstate = self.weighting.weights(wstate, ctx)
    task_term = losses.weighted_task_term(weight_T, task_loss_T)
    return task_term + penalty, ({"task_loss": task_loss_T, "task_count": count_T, "task_term": task_term,
                                  "penalty": penalty, "task_weight": weight_T}, wstate)

  def _loss_and_grads(self, params, batch, rng, wstate, step):
    """(loss, metrics, grads, new weighting state) under the run's weighting method."""
    if self.microbatches > 1:
      return self._microbatched(params, batch, rng, wstate, step)
    if self.weighting.kind == "bilevel":  # its own look-ahead step (weighting/auto_lambda.py)
      return self.weighting.step(lambda p, b, r: self._task_losses(p, b, r, self.grouped), params, batch, rng,
                                 wstate, step)
    if self.weighting.kind == "loss":
      (loss, (aux, wstate)), grads = jax.value_and_grad(self._loss, has_aux=True)(params, batch, rng, wstate, step)
      return loss, aux, grads, wstate
    if self.weighting.rep_grad:
      return weighting_grads.rep_step(self.weighting, self._task_losses, params, batch, rng, wstate, step,
                                      self.num_tasks, self.model.config.d_model)
    return weighting_grads.param_step(self.weighting, self._task_losses, params, batch, rng, wstate, step,
                                      self.num_tasks)

  def _train_step(self, state: TrainState, batch, seed=None):
    """seed: a traced per-seed value under the 'seeds' axis (step/seed_axis.py); default the run's."""
    rng = jax.random.fold_in(jax.random.key(self.seed if seed is None else seed), state.step)
    loss, aux, grads, wstate = self._loss_and_grads(state.params, batch, rng, state.weighting, state.step)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    params, opt_state = guarded_update(self.tx, state.params, state.opt_state, grads, finite)
    wstate = weighting_lib.base.tree_where(finite, wstate, state.weighting)  # skipped step: state kept
    # on a non-finite step the step counter still advances with the data
    metrics = {"loss": loss, "grad_norm": grad_norm, "finite": finite, **aux}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, weighting=wstate), metrics

  def _predict_step(self, params, batch):
    with nn.logical_axis_rules(self.rules):
      out = self.model.apply({"params": params}, batch, deterministic=True)
    return {kind: heads_lib.KINDS[kind].predict(out) for kind in set(self.task_kinds)}

  def run_train_step(self, state, batch):
    with jax.set_mesh(self.mesh):
      return self.train_step(state, self.put_batch(batch))

  def run_predict(self, params, batch):
    with jax.set_mesh(self.mesh):
      return jax.device_get(self.predict_step(params, self.put_global_batch(batch)))

  def put_batch(self, batch):
    """Host numpy batch (this process's rows) -> global array sharded on 'data'."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), with_token_types(batch))

  def put_global_batch(self, batch):
    """Host numpy batch holding ALL rows (the same on every process, e.g. an eval batch)
    -> global array sharded on 'data'; each process places only its devices' rows."""
    return jax.tree.map(
        lambda x, s: jax.make_array_from_callback(x.shape, s, lambda index: x[index]),
        {k: np.asarray(v) for k, v in with_token_types(batch).items()}, self.batch_shardings)
