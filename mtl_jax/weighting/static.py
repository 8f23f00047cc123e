"""static: explicit per-task weights (the baseline every adaptive method must beat; a sweep
of them draws the Pareto front). Normalised to mean 1, so equal weights == 'equal'."""

from typing import Sequence

import gin
import jax.numpy as jnp
import numpy as np

from mtl_jax.weighting import base


class Static(base.Method):
  def __init__(self, weights: np.ndarray):
    self.w = weights * len(weights) / weights.sum()

  def weights(self, state, ctx):
    return jnp.asarray(self.w, jnp.float32) * base.mean_present(ctx), state


@base.register("static")
@gin.configurable("static", module="mtl_jax.weighting")
def static(num_tasks: int, weights: Sequence[float] = ()) -> base.Method:
  """weights: one non-negative number per task, in the run's sorted task order."""
  w = np.asarray(list(weights), np.float64)
  if w.shape != (num_tasks,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
    raise ValueError(f"weighting.static.weights={list(weights)!r} must be {num_tasks} non-negative numbers "
                     f"(one per task, sorted task order) not all zero; set --gin.weighting.static.weights=[...]")
  return Static(w)
