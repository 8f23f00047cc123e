"""A probe's scores as the evaluator computes them: the task's seqio metric_fns and the headline.

One place for the linear probes of curves.py (pooled features) and token_heads.py (QA / multiple choice).
"""

from __future__ import annotations

import seqio

from mtl_jax.step import metrics


def score_pairs(task_name: str, pairs) -> dict[str, float]:
  """The task's metric_fns (+ the headline) on (target, prediction) pairs from its head's metric_pair."""
  targets, predictions = [t for t, _ in pairs], [p for _, p in pairs]
  out = {}
  for fn in seqio.get_mixture_or_task(task_name).metric_fns:
    out.update({k: float(v) for k, v in fn(targets, predictions).items()})
  out["headline"] = metrics.headline(out)
  return out


def headline_name(result: dict) -> str:
  """Which metric the headline is (the first of metrics.HEADLINE_ORDER the result has)."""
  return next((k for k in metrics.HEADLINE_ORDER if k in result), "headline")
