"""config (ConFIG, Liu et al. 2024, eq. 2): the direction with equal, positive cosine to every
task gradient, u = (U^+ 1) / ||U^+ 1|| with U the unit task gradients, scaled to the mean of
the tasks' projections on it: d = (mean_t g_t . u) u. (The paper and torchjd scale by the SUM
of the projections: their value is ours times the task count.)

On the Gram matrix: U^+ 1 = U^T (U U^T)^+ 1 = G^T D^{-1} c with c = (D^{-1} M D^{-1})^+ 1 and
D = diag ||g_t||, so every quantity is a T-vector (exact pseudo-inverse, rank cut as
solvers.eig_cut). Zero rows: their unit vector is 0 (as torchjd's nan_to_num), they get weight
0 and the mean is over the live tasks."""

import gin
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def weights(gram):
  alive = solvers.live(gram)
  norms = jnp.sqrt(jnp.where(alive, jnp.diag(gram), 1.0))
  inv = jnp.where(alive, 1.0 / norms, 0.0)
  c = solvers.pinv_psd(gram * inv[:, None] * inv[None, :]) @ alive.astype(gram.dtype)
  direction = c * inv                                      # U^+ 1 = G^T direction
  length = jnp.sqrt(jnp.maximum(direction @ gram @ direction, 0.0))
  unit = direction / jnp.maximum(length, 1e-30)            # G^T unit has norm 1
  projection = (gram @ unit) @ solvers.mean_live(gram)     # mean_t g_t . u
  return projection * unit


class ConFIG(base.Method):
  kind = "gradient"

  def combine(self, gram, state, ctx):
    g, scale = solvers.normalized(gram)
    return weights(g), state  # weights(scale * g) == weights(g): alpha is scale-free


@base.register("config")
@gin.configurable("config", module="mtl_jax.weighting")
def config(num_tasks: int) -> base.Method:
  return ConFIG()
