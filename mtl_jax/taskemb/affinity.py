"""TAG lookahead inter-task affinity (Fifty et al. 2021) as a step hook of mtl-train.

  Z[i -> j] = 1 - L_j(theta after a step on L_i only) / L_j(theta)

Z > 0: a step on task i alone lowers task j's loss. Every `affinity.every` steps the hook takes the
batch just trained on and the current state, computes every task's gradient of the shared params
(all but the heads: one vmap over one-hot task weights, no loop over tasks), makes each task's
lookahead step (the run's own optimizer update with the current optimizer state, or plain SGD with
`affinity.learning_rate`; heads held), and evaluates every task's loss at every lookahead point (a
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

from mtl_jax import losses, step_hooks

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


def lookahead(model, task_kinds, num_tasks, params, opt_state, batch, tx=None, learning_rate=None):
  """(L [T, T]: L[i, j] = L_j after a step on L_i, L0 [T], counts [T]); tx None: SGD at learning_rate."""
  mask = shared_mask(params)
  loss0, count = task_losses(model, task_kinds, num_tasks, params, batch)

  def step_on(onehot):
    grad = jax.grad(lambda p: onehot @ task_losses(model, task_kinds, num_tasks, p, batch)[0])(params)
    if tx is None:
      update = jax.tree.map(lambda g: -learning_rate * g, grad)
    else:
      update, _ = tx.update(grad, opt_state, params)
    update = jax.tree.map(lambda u, m: u if m else jnp.zeros_like(u), update, mask)
    return task_losses(model, task_kinds, num_tasks, optax.apply_updates(params, update), batch)[0]

  return jax.vmap(step_on)(jnp.eye(num_tasks, dtype=loss0.dtype)), loss0, count


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

    def measure(state, batch):
      after, before, count = lookahead(steps.model, steps.task_kinds, t, state.params, state.opt_state, batch,
                                       tx, learning_rate)
      return affinity_from(after, before, count)

    self._measure = jax.jit(measure)

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
