"""upgrad (Quinton & Rey 2024, torchjd): project each task's gradient onto the dual cone
{d : g_j . d >= 0 for all j} and average; the result conflicts with no task. In weights:
u_i = argmin_{u >= e_i} u^T M u (a box QP per task, solved for all i at once by FISTA),
alpha = mean_i u_i (torchjd's mean preference vector).

Zero rows (solvers.live): a zero gradient adds no constraint and projects to 0; the mean is
over the live tasks (torchjd's is over all T: its value is ours times (live count) / T)."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def weights(gram, iters: int):
  eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
  return solvers.mean_live(gram) @ jax.vmap(lambda e: solvers.dual_cone(gram, e, iters))(eye)


class UPGrad(base.Method):
  kind = "gradient"

  def __init__(self, iters: int):
    self.iters = iters

  def combine(self, gram, state, ctx):
    return weights(solvers.normalized(gram)[0], self.iters), state


@base.register("upgrad")
@gin.configurable("upgrad", module="mtl_jax.weighting")
def upgrad(num_tasks: int, iters: int = 200) -> base.Method:
  return UPGrad(solvers.check_iters("upgrad", iters))
