"""pcgrad (Yu et al. 2020): each task's gradient, in its own random order over the other
tasks, loses its component along any gradient it conflicts with (negative dot product);
the update is the mean of the projected gradients.

Tracked as coefficients C (g_i^PC = sum_k C_ik g_k) on the Gram matrix: every task's
projections run at once, T sequential rounds of [T]-vector work. The mean is over the live
tasks (solvers.live: a zero gradient neither conflicts nor counts); torchjd's PCGrad sums the
projected gradients (its value is ours times T)."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def orders(rng, num_tasks):
  """[T, T]: row i is task i's random order over the tasks (fresh every step)."""
  return jax.vmap(lambda k: jax.random.permutation(k, num_tasks))(jax.random.split(rng, num_tasks))


def project_coefficients(gram, perms):
  t = gram.shape[0]
  rows = jnp.arange(t)

  def body(k, coef):
    j = perms[:, k]
    dots = jnp.einsum("is,is->i", coef, gram[:, j].T)  # g_i^PC . g_j
    conflict = (dots < 0) & (j != rows)
    scale = jnp.where(conflict, dots / jnp.maximum(gram[j, j], 1e-30), 0.0)
    return coef.at[rows, j].add(-scale)

  return jax.lax.fori_loop(0, t, body, jnp.eye(t, dtype=gram.dtype))


class PCGrad(base.Method):
  kind = "gradient"

  def combine(self, gram, state, ctx):
    coef = project_coefficients(gram, orders(ctx.rng, gram.shape[0]))
    return solvers.mean_live(gram) @ coef, state


@base.register("pcgrad")
@gin.configurable("pcgrad", module="mtl_jax.weighting")
def pcgrad(num_tasks: int) -> base.Method:
  return PCGrad()
