"""The weighting interface: how per-task losses (or per-task gradients) become one update.

Two kinds of method, one contract: each returns task weights, and the shared update is
the weighted sum of the tasks' losses (kind 'loss') or of their gradients on the shared
parameters (kind 'gradient'; every method here gives a linear combination of the task
gradients, so weights on the T x T Gram matrix say it all and no [T, P] matrix is ever
concatenated). State a method learns or remembers (UW log-variances, DWA loss history,
FAMO logits, an inner Adam) is a dict of arrays kept in TrainState.weighting, so it is
checkpointed, sharded (replicated: it is [T]-sized) and resumed with the model.

Convention: weights are on the scale of 'mean over present tasks' (equal = 1/T each), so
swapping methods does not change the effective learning rate by a factor T.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from mtl_jax.registry import Registry

KINDS = ("loss", "gradient")


@flax.struct.dataclass
class Context:
  """What a method may look at in one step (no gradient flows through any of it)."""
  loss_T: jax.Array      # per-task mean loss of this batch
  count_T: jax.Array     # examples of each task in this batch
  rng: jax.Array         # fold_in(seed, step): the same draws after a resume
  step: jax.Array        # the step being taken (0-based)

  @property
  def present_T(self) -> jax.Array:
    return (self.count_T > 0).astype(jnp.float32)


class Method:
  """One weighting method. Loss methods implement `weights`; gradient methods `combine`."""
  name: str = ""
  kind: str = "loss"
  rep_grad: bool = False  # gradients w.r.t. the shared representation (set by weighting.configured)

  def init(self, num_tasks: int) -> dict:
    """The method's state (a dict of arrays; {} when it keeps none)."""
    return {}

  def weights(self, state: dict, ctx: Context) -> tuple[jax.Array, dict]:
    """(w [T] applied to the task losses, new state)."""
    raise NotImplementedError

  def combine(self, gram_TT: jax.Array, state: dict, ctx: Context) -> tuple[jax.Array, dict]:
    """(alpha [T]: the shared update is sum_t alpha_t g_t, new state) from gram = G G^T."""
    raise NotImplementedError


def mean_present(ctx: Context) -> jax.Array:
  """Equal weights over the tasks in the batch: the 'equal' method and many fallbacks."""
  present = ctx.present_T
  return present / jnp.maximum(present.sum(), 1.0)


_REGISTRY = Registry("weighting method", "gin/weighting")
register, names = _REGISTRY.register, _REGISTRY.names  # register(name): `factory(num_tasks) -> Method`, gin-configurable


def build(name: str, num_tasks: int) -> Method:
  method = _REGISTRY.get(name)(num_tasks)
  method.name = name
  return method


def tree_where(cond, new: Any, old: Any) -> Any:
  """`new` where cond else `old`, leaf by leaf (a skipped non-finite step keeps the state)."""
  return jax.tree.map(lambda n, o: jnp.where(cond, n, o), new, old)
