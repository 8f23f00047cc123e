"""imtl (Liu et al. 2021, IMTL-G): the combination d = sum_t alpha_t g_t (sum alpha = 1)
whose projections onto every task's unit gradient u_t are equal. On the Gram matrix M:
alpha = M^+ n / 1^T M^+ n with n_t = ||g_t|| (equal projections mean G d = c n; the paper's
alpha_{2:T} = g_1 U^T (D U^T)^{-1} when G has full row rank, and the generalisation of
Quinton & Rey 2024 / torchjd when it does not).

Exact: the Moore-Penrose pseudo-inverse (rank cut at max(lambda) x T x eps, no ridge). A zero
gradient row has n_t = 0 and a zero row in M^+, so its weight is exactly 0 and the others
are IMTL-G on the remaining tasks (no stall). When 1^T M^+ n vanishes (no gradient at all)
the weights are 0, as torchjd."""

import gin
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def weights(gram):
  n = jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0))
  v = solvers.pinv_psd(gram) @ n
  total = v.sum()
  ok = jnp.abs(total) > 1e-12
  return jnp.where(ok & solvers.live(gram), v / jnp.where(ok, total, 1.0), 0.0)  # float32 eigh leaks ~1e-4


class IMTL(base.Method):
  kind = "gradient"

  def combine(self, gram, state, ctx):
    return weights(solvers.normalized(gram)[0]), state


@base.register("imtl")
@gin.configurable("imtl", module="mtl_jax.weighting")
def imtl(num_tasks: int) -> base.Method:
  return IMTL()
