"""aligned_mtl (Senushkin et al. 2023): replace the task gradients by the closest set of
orthogonal gradients of equal norm sigma_min (the smallest singular value of G), so the
system's condition number is 1: G' = B G with B = sqrt(l_min) V L^{-1/2} V^T from the
eigendecomposition G G^T = V L V^T (rank-truncated); the update is the mean of G'."""

import gin
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def weights(gram):
  t = gram.shape[0]
  lam, vec = jnp.linalg.eigh(gram)
  keep = lam > lam[-1] * t * 1e-6
  lam_min = jnp.min(jnp.where(keep, lam, jnp.inf))
  inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(jnp.maximum(lam, 1e-30)), 0.0)
  b = jnp.sqrt(lam_min) * (vec * inv_sqrt) @ vec.T
  return b.sum(0) / t


class AlignedMTL(base.Method):
  kind = "gradient"

  def combine(self, gram, state, ctx):
    return weights(solvers.normalized(gram)[0]), state


@base.register("aligned_mtl")
@gin.configurable("aligned_mtl", module="mtl_jax.weighting")
def aligned_mtl(num_tasks: int) -> base.Method:
  return AlignedMTL()
