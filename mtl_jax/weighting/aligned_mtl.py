"""aligned_mtl (Senushkin et al. 2023): replace the task gradients by the closest set of
orthogonal gradients of equal norm sigma_min (the smallest kept singular value of G), so the
system's condition number is 1: G' = B G with B = sqrt(l_min) V L^{-1/2} V^T from the
eigendecomposition G G^T = V L V^T; the update is the mean of G' (alpha = B 1 / T, the
paper's and torchjd's mean preference vector).

Exact, as the official code: the eigenvalues kept are those above max(lambda) x T x machine
epsilon (solvers.eig_cut), no ridge. A zero gradient row has eigenvalue 0 along e_t, so it is
cut and gets weight 0; the mean is over the live tasks (solvers.live; torchjd's B 1 / T is
ours times (live count) / T). With no gradient at all the weights are 0."""

import gin
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def weights(gram):
  lam, vec, keep = solvers.eig_cut(gram)
  lam_min = jnp.min(jnp.where(keep, lam, jnp.inf))
  inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, lam, 1.0)), 0.0)
  b = jnp.sqrt(jnp.where(keep.any(), lam_min, 1.0)) * (vec * inv_sqrt) @ vec.T
  return jnp.where(keep.any() & solvers.live(gram), b @ solvers.mean_live(gram), 0.0)  # float32 eigh leaks ~1e-4


class AlignedMTL(base.Method):
  kind = "gradient"

  def combine(self, gram, state, ctx):
    return weights(solvers.normalized(gram)[0]), state


@base.register("aligned_mtl")
@gin.configurable("aligned_mtl", module="mtl_jax.weighting")
def aligned_mtl(num_tasks: int) -> base.Method:
  return AlignedMTL()
