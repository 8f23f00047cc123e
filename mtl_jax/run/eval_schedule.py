"""How often a run evaluates: `train.eval_period`, unless that would leave a short run one point.

Why: quickstart.gin's eval_period=100 with `--gin.TRAIN_STEPS=40` evaluates only at the end, so
every learning curve is one dot. When eval_period exceeds TRAIN_STEPS the run evaluates every
TRAIN_STEPS // 5 steps instead (at least 1: about five points, the first well before the end) and
says so in one line at the start.
"""

from __future__ import annotations

POINTS = 5  # evaluations of a run shorter than its eval_period


def period(eval_period: int, train_steps: int, echo=print) -> int:
  """The period the loop uses (the step loop also evaluates at the last step)."""
  if eval_period <= train_steps:
    return eval_period
  short = max(1, train_steps // POINTS)
  echo(f"mtl_jax: train.eval_period={eval_period} > TRAIN_STEPS={train_steps}: evaluating every {short} "
       f"step{'s' if short > 1 else ''} instead (set --gin.trainer.train.eval_period to choose)")
  return short
