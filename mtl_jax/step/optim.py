"""Optimizer: global-norm clipping + AdamW on a warmup-cosine schedule (optax).

Weight decay skips vectors (biases, LayerNorm scales) via an ndim mask. With parameter
groups (mtl_jax/step/param_groups.py, gin `param_groups.*`) each group trains with AdamW on
schedule * multiplier (optax.multi_transform); frozen parameters get optax.set_to_zero:
no update, no Adam state, and no share of the clipping norm. Without groups the
optimizer is exactly the plain one (resumed runs stay bit-identical).
"""

from __future__ import annotations

import gin
import jax
import optax

from mtl_jax.step import param_groups as groups_lib


def _by_group(groups: groups_lib.Groups, group_tx) -> optax.GradientTransformation:
  """optax.multi_transform over the groups the parameter tree holds. Which multipliers
  exist (e.g. decay ** k for K layers) is known only from the tree, so the transform is
  built from it at init and again (identically) at each update."""
  def build(tree):
    multipliers = sorted(set(groups.multipliers(tree).values()))
    return optax.multi_transform({groups_lib.label(m): group_tx(m) for m in multipliers}, groups.labels)
  return optax.GradientTransformation(
      lambda params: build(params).init(params),
      lambda updates, state, params=None: build(updates).update(updates, state, params))


@gin.configurable
def make_optimizer(total_steps: int, learning_rate: float = 1e-3, warmup_steps: int = 50,
                   end_learning_rate_fraction: float = 0.1, weight_decay: float = 0.01,
                   clip_norm: float = 1.0, b1: float = 0.9, b2: float = 0.98,
                   groups: groups_lib.Groups | None = None):
  """(tx, schedule). groups: parameter groups; None = the gin-bound `param_groups.*`."""
  if learning_rate <= 0:
    raise ValueError(f"make_optimizer.learning_rate must be > 0, got {learning_rate}")
  warmup = max(0, min(warmup_steps, total_steps - 1))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, warmup_steps=warmup, decay_steps=max(total_steps, warmup + 1),
      end_value=learning_rate * end_learning_rate_fraction)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  groups = groups_lib.configured() if groups is None else groups
  if not groups.active:
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask)), schedule

  def group_tx(multiplier: float):
    if multiplier == 0:
      return optax.set_to_zero()
    return optax.adamw(lambda count: schedule(count) * multiplier, b1=b1, b2=b2, weight_decay=weight_decay,
                       mask=decay_mask)
  return optax.chain(
      optax.masked(optax.clip_by_global_norm(clip_norm), groups.trainable),
      _by_group(groups, group_tx)), schedule


def groups_note(params) -> str:
  """' param groups: frozen=N lr_x...' for the start line when groups are configured, else ''."""
  groups = groups_lib.configured()
  return f"; {groups.summary(params)}" if groups.active else ""


def trainable_count(params) -> int:
  """How many parameters the gin-bound param groups let train (multiplier > 0): all of them without groups."""
  groups = groups_lib.configured()
  if not groups.active:
    return int(sum(x.size for x in jax.tree.leaves(params)))
  trainable = groups.trainable(params)
  return int(sum(getattr(x, "value", x).size for x, keep in zip(
      jax.tree.leaves(params, is_leaf=groups_lib._is_leaf), jax.tree.leaves(trainable)) if keep))
