"""TAG lookahead inter-task affinity (Fifty et al. 2021) as a step hook of mtl-train.

  Z[i -> j] = 1 - L_j(theta after a step on L_i only) / L_j(theta)

Z > 0: a step on task i alone lowers task j's loss. Every `affinity.every` steps the hook takes the
batch just trained on and the current state and computes every task's gradient as weighting.gradients
does for gradient methods: the rows regrouped task-major into [T, cap] groups, one vmap of the gradient
over them (about one backward pass, no loop over tasks). Then each task's lookahead step of the shared
params (the run's own optimizer update with the current optimizer state, or plain SGD with
`affinity.learning_rate`; heads held) and every task's loss at every lookahead point (T forwards, a
second vmap): one jit, [T, T] per measurement. Losses are deterministic (no dropout) so Z measures the
step, not dropout noise. Pairs where i or j has no example in the batch are skipped. Z is averaged
over the run's measurements and written to MODEL_DIR/affinity.json (rewritten at each measurement,
continued on resume); the run itself trains exactly as without the hook.

  step_hooks.names = ['affinity']      # gin/taskemb/affinity.gin
  affinity.every = 10
"""

from __future__ import annotations

import json
import pathlib
import time

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from mtl_jax.step import losses, step_hooks
from mtl_jax.weighting import gradients

FILE = "affinity.json"
UPDATES = ("optimizer", "sgd")


def shared_mask(params):
  """True for the params every task moves (embedder, trunk, mixing weights); heads are per-task."""
  flat = traverse_util.flatten_dict(params, sep="/")
  return traverse_util.unflatten_dict({p: not p.startswith("heads/") for p in flat}, sep="/")


def task_losses(model, task_kinds, num_tasks, params, batch):
  """(mean loss [T], examples [T]) with dropout off."""
  out = model.apply({"params": params}, batch, deterministic=True)
  return losses.per_task_mean(losses.example_losses(out, batch, task_kinds), batch["weight"], batch["task_id"],
                              num_tasks)


def capacity(count, batch_size: int) -> int:
  """Rows per task group for a batch with `count` [T] rows of each task: exact for the grouped layout,
  else the max count rounded up to a power of two (few compiles over a run), at most the batch."""
  most, t = int(np.max(count)), len(count)
  if most * t == batch_size and np.all(np.asarray(count) == most):
    return most
  return min(batch_size, 1 << max(0, most - 1).bit_length())


def task_major(batch, num_tasks: int, cap: int):
  """The batch's rows task-major in [T * cap] (stable order); the slots past a task's rows copy some row and
  get weight 0 and that task's id, so each [cap] group is exactly one task's examples."""
  task = batch["task_id"]
  count = jnp.bincount(task, length=num_tasks)
  slot = jnp.arange(cap)
  where = (jnp.cumsum(count) - count)[:, None] + slot[None, :]  # [T, cap] positions in the sorted rows
  rows = jnp.argsort(task, stable=True)[jnp.minimum(where, task.shape[0] - 1)].reshape(-1)
  out = jax.tree.map(lambda x: x[rows], batch)
  out["weight"] = out["weight"] * (slot[None, :] < count[:, None]).reshape(-1).astype(out["weight"].dtype)
  out["task_id"] = jnp.repeat(jnp.arange(num_tasks, dtype=task.dtype), cap)
  return out


def lookahead(model, task_kinds, num_tasks, params, opt_state, batch, cap, tx=None, learning_rate=None):
  """(L [T, T]: L[i, j] = L_j after a step on L_i, L0 [T], counts [T]); tx None: SGD at learning_rate.

  The T task gradients are one vmap over the batch regrouped into [T, cap] task groups
  (weighting.gradients.task_grads: ~ one backward pass), then T lookahead forwards (a vmap over the
  gradients) on the whole batch. `cap` (static) must be >= every task's row count (see `capacity`)."""
  mask = shared_mask(params)
  loss0, count = task_losses(model, task_kinds, num_tasks, params, batch)

  def own_loss(p, group, t):
    return task_losses(model, task_kinds, num_tasks, p, group)[0][t], ()

  groups = gradients.groups(task_major(batch, num_tasks, cap), num_tasks)
  grads_T, _ = gradients.task_grads(own_loss, params, groups, num_tasks)

  def step_on(grad):
    if tx is None:
      update = jax.tree.map(lambda g: -learning_rate * g, grad)
    else:
      update, _ = tx.update(grad, opt_state, params)
    update = jax.tree.map(lambda u, m: u if m else jnp.zeros_like(u), update, mask)
    return task_losses(model, task_kinds, num_tasks, optax.apply_updates(params, update), batch)[0]

  return jax.vmap(step_on)(grads_T), loss0, count


def affinity_from(after, before, count):
  """(Z [T, T], valid [T, T]): Z[i, j] = 1 - after[i, j] / before[j] where tasks i and j are present."""
  present = count > 0
  valid = present[:, None] & present[None, :] & (before[None, :] > 0)
  z = jnp.where(valid, 1.0 - after / jnp.where(before > 0, before, 1.0)[None, :], 0.0)
  return z, valid


@gin.configurable("affinity", denylist=["context"])
class AffinityHook:
  """Measures Z every `every` steps (from `start`), accumulates the mean, writes MODEL_DIR/affinity.json."""

  def __init__(self, context, every: int = 10, start: int = 1, update: str = "optimizer",
               learning_rate: float = 1e-3):
    if not isinstance(every, int) or every < 1:
      raise ValueError(f"affinity.every must be an int >= 1 (measure every N steps), got {every!r}")
    if update not in UPDATES:
      raise ValueError(f"affinity.update={update!r}: use 'optimizer' (the run's optax update) or 'sgd'")
    if update == "sgd" and not learning_rate > 0:
      raise ValueError(f"affinity.learning_rate must be > 0 for update='sgd', got {learning_rate!r}")
    self.context, self.every, self.start, self.update, self.lr = context, every, start, update, learning_rate
    steps = context.steps
    self.names = list(context.task_names)
    t = len(self.names)
    self.sum, self.n = np.zeros((t, t)), np.zeros((t, t))
    self.measured, self.seconds = 0, 0.0
    self._load()
    tx = steps.tx if update == "optimizer" else None

    def measure(state, batch, cap):
      after, before, count = lookahead(steps.model, steps.task_kinds, t, state.params, state.opt_state, batch,
                                       cap, tx, learning_rate)
      return affinity_from(after, before, count)

    self._jit_measure = jax.jit(measure, static_argnums=2)
    self._count = jax.jit(lambda batch: jnp.bincount(batch["task_id"], length=t))

  def _measure(self, state, batch):
    """(Z, valid) on a device batch; its task counts fix the group size (one small transfer)."""
    cap = capacity(jax.device_get(self._count(batch)), batch["task_id"].shape[0])
    return self._jit_measure(state, batch, cap)

  @property
  def path(self) -> pathlib.Path:
    return pathlib.Path(self.context.model_dir) / FILE

  def _load(self):
    if not self.path.is_file():
      return
    old = json.loads(self.path.read_text())
    if old.get("tasks") == self.names:  # a resumed run continues its average
      self.sum, self.n = np.asarray(old["sum"], float), np.asarray(old["count"], float)
      self.measured, self.seconds = int(old["measurements"]), float(old["seconds"])

  def after_step(self, step: int, state, batch) -> None:
    if step < self.start or (step - self.start) % self.every:
      return
    tick = time.perf_counter()
    steps = self.context.steps
    with jax.set_mesh(steps.mesh), nn.logical_axis_rules(steps.rules):
      z, valid = jax.device_get(self._measure(state, steps.put_batch(batch)))
    self.sum += np.where(valid, z, 0.0)
    self.n += valid
    self.measured += 1
    self.seconds += time.perf_counter() - tick
    self.write(step)

  def mean(self) -> np.ndarray:
    return np.where(self.n > 0, self.sum / np.maximum(self.n, 1), np.nan)

  def write(self, step: int) -> None:
    if not self.context.lead:
      return
    mean = self.mean()
    record = {"tasks": self.names, "step": step, "every": self.every, "start": self.start, "update": self.update,
              "learning_rate": self.lr if self.update == "sgd" else None,
              "measurements": self.measured, "seconds": self.seconds,
              "affinity": [[None if np.isnan(v) else float(v) for v in row] for row in mean],
              "sum": self.sum.tolist(), "count": self.n.tolist(),
              "meaning": "affinity[i][j] = mean over measured steps of 1 - L_j(after a step on task i) / L_j(before)"}
    tmp = self.path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(self.path)

  def close(self, step: int, state) -> None:
    if self.measured:
      self.write(step)


step_hooks.register("affinity")(AffinityHook)


def read(model_dir) -> tuple[list[str], np.ndarray]:
  """(tasks, mean Z [T, T]) from a run's affinity.json."""
  path = pathlib.Path(model_dir) / FILE
  if not path.is_file():
    raise ValueError(f"{str(path)!r} does not exist: train with --gin_file=gin/taskemb/affinity.gin "
                     "(step_hooks.names = ['affinity']) to measure task affinity")
  record = json.loads(path.read_text())
  return record["tasks"], np.array([[np.nan if v is None else v for v in row] for row in record["affinity"]])
