"""imtl (Liu et al. 2021, IMTL-G): the combination d = sum_t alpha_t g_t (sum alpha = 1)
whose projections onto every task's unit gradient u_t are equal:
alpha_{2:T} = g_1 U^T (D U^T)^{-1}, D = [g_1 - g_t], U = [u_1 - u_t], alpha_1 = 1 - sum."""

import gin
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def weights(gram):
  t = gram.shape[0]
  inv_norm = 1.0 / jnp.sqrt(jnp.maximum(jnp.diag(gram), 1e-30))
  s = jnp.eye(t, dtype=gram.dtype)[:1] - jnp.eye(t, dtype=gram.dtype)[1:]  # rows e_1 - e_t
  a = s @ gram @ (inv_norm[:, None] * s.T)   # D U^T
  b = s @ (inv_norm * gram[:, 0])            # U g_1
  rest = jnp.linalg.solve(a.T + 1e-7 * jnp.eye(t - 1, dtype=gram.dtype), b)
  return jnp.concatenate([1.0 - rest.sum(keepdims=True), rest])


class IMTL(base.Method):
  kind = "gradient"

  def combine(self, gram, state, ctx):
    if gram.shape[0] == 1:
      return jnp.ones((1,), gram.dtype), state
    return weights(solvers.normalized(gram)[0]), state


@base.register("imtl")
@gin.configurable("imtl", module="mtl_jax.weighting")
def imtl(num_tasks: int) -> base.Method:
  return IMTL()
