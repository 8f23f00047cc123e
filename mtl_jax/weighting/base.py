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

KINDS = ("loss", "gradient", "bilevel")  # bilevel: the method takes its own step (auto_lambda)


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
  task_grads: str = "auto"  # gradient methods: keep the T per-task gradients or recompute (gradients.recomputes)

  def init(self, num_tasks: int) -> dict:
    """The method's state (a dict of arrays; {} when it keeps none)."""
    return {}

  def init_with_params(self, num_tasks: int, params) -> dict:
    """The state of a method that also keeps gradient-sized buffers (GradMethod); the others' init."""
    return self.init(num_tasks)

  def bind_batch(self, example_batch: dict) -> None:
    """The train batch's structure and shapes, before init (a method keeping a batch in its state: auto_lambda)."""

  def weights(self, state: dict, ctx: Context) -> tuple[jax.Array, dict]:
    """(w [T] applied to the task losses, new state)."""
    raise NotImplementedError

  def combine(self, gram_TT: jax.Array, state: dict, ctx: Context) -> tuple[jax.Array, dict]:
    """(alpha [T]: the shared update is sum_t alpha_t g_t, new state) from gram = G G^T."""
    raise NotImplementedError


class GradMethod(Method):
  """A gradient method whose update is not a combination of this step's gradients (momentum /
  accumulator buffers of every task's gradient: DB-MTL, MoCo, ExcessMTL). Its state holds, under
  'grads', [T, ...] buffers shaped like the shared parameters (logical axes ('tasks', *the param's),
  so FSDP splits them as it splits the params); `combine_grads` sees the per-task gradients."""
  kind = "gradient"
  buffers: tuple[str, ...] = ()  # names of the [T, ...] buffers kept per shared parameter

  def init_with_params(self, num_tasks, params):
    import flax.linen as nn

    def zeros(leaf):
      if isinstance(leaf, nn.LogicallyPartitioned):
        return leaf.replace_boxed(jnp.zeros((num_tasks, *leaf.value.shape), jnp.float32)).replace(
            names=("tasks", *leaf.names))
      return jnp.zeros((num_tasks, *leaf.shape), jnp.float32)

    shared = {k: v for k, v in params.items() if k not in TASK_SPECIFIC}
    is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)
    return {**self.init(num_tasks),
            "grads": {b: jax.tree.map(zeros, shared, is_leaf=is_box) for b in self.buffers}}

  def combine(self, gram_TT, state, ctx):
    raise ValueError(f"weighting {self.name!r} keeps per-task gradient buffers: it needs the per-parameter "
                     "gradients (weighting.rep_grad=False)")

  def combine_grads(self, grads_T: dict, state: dict, ctx: Context):
    """(shared update tree, head weights [T], reported task weights [T], new state) from the shared
    parameters' per-task gradients grads_T ([T, ...] leaves)."""
    raise NotImplementedError


TASK_SPECIFIC = ("heads",)  # top-level param collections that are not shared


def tree_sq_norms(tree_T) -> jax.Array:
  """[T] squared norms of the per-task rows of a [T, ...]-leaved tree."""
  return sum(jnp.sum(x.reshape(x.shape[0], -1).astype(jnp.float32) ** 2, 1) for x in jax.tree.leaves(tree_T))


def tree_rows(weights_T, tree_T):
  """sum_t w_t x_t over the leading task axis of every leaf."""
  return jax.tree.map(lambda x: jnp.tensordot(weights_T.astype(x.dtype), x, 1), tree_T)


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
