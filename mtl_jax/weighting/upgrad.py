"""upgrad (Quinton & Rey 2024, torchjd): project each task's gradient onto the dual cone
{d : g_j . d >= 0 for all j} and average; the result conflicts with no task. In weights:
u_i = argmin_{u >= e_i} u^T M u (a box QP per task, solved for all i at once by FISTA),
alpha = mean_i u_i."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def weights(gram, iters: int):
  t = gram.shape[0]
  step = 1.0 / (2.0 * jnp.linalg.eigvalsh(gram)[-1])
  eye = jnp.eye(t, dtype=gram.dtype)

  def one(e):  # u = e + v, v >= 0
    v = solvers.fista(lambda v: 2.0 * gram @ (e + v), lambda v: jnp.maximum(v, 0.0), jnp.zeros_like(e), step, iters)
    return e + v

  return jax.vmap(one)(eye).mean(0)


class UPGrad(base.Method):
  kind = "gradient"

  def __init__(self, iters: int):
    self.iters = iters

  def combine(self, gram, state, ctx):
    return weights(solvers.normalized(gram)[0], self.iters), state


@base.register("upgrad")
@gin.configurable("upgrad", module="mtl_jax.weighting")
def upgrad(num_tasks: int, iters: int = 200) -> base.Method:
  return UPGrad(int(iters))
