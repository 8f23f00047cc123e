"""The head-kind interface.

All tasks' heads are one stacked linear layer (see models/heads.py) producing, for
every example, class-masked logits from the pooled sequence and from every token.
A HeadKind says how a task of its kind turns those into a loss, a prediction, and
the (targets, predictions) pairs its metric functions receive.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax


class HeadOutputs(NamedTuple):
  pooled_logits: jax.Array  # [B, C] (classes beyond a task's label set masked to -inf)
  token_logits: jax.Array   # [B, L, C]


class HeadKind:
  name: str = ""

  def example_loss(self, out: HeadOutputs, batch: Mapping[str, jax.Array]) -> jax.Array:
    """Per-example loss [B] (computed for every example; the caller keeps its own kind's)."""
    raise NotImplementedError

  def predict(self, out: HeadOutputs) -> jax.Array:
    """Per-example prediction (inside jit)."""
    raise NotImplementedError

  def metric_pair(self, prediction: Any, example: Mapping[str, Any], label_names) -> tuple[Any, Any]:
    """(target, prediction) for one example in numpy, as the metric functions expect."""
    raise NotImplementedError
