"""gradvac (Wang et al. 2021, gradient vaccine): like PCGrad, but each pair (i, j) is pushed
up to an EMA target cosine phi_ij (not just to 0): when cos(g_i, g_j) < phi_ij,
g_i += ||g_i|| (phi sqrt(1-c^2) - c sqrt(1-phi^2)) / (||g_j|| sqrt(1-phi^2)) g_j.
The targets phi [T, T] (EMA rate beta) live in TrainState; whole-model granularity.
Zero rows (solvers.live): a zero gradient neither vaccinates nor is vaccinated, its targets
stay as they were, and the mean is over the live tasks."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base, pcgrad, solvers


def vaccinate(gram, perms, target, beta):
  t = gram.shape[0]
  rows = jnp.arange(t)
  norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 1e-30))
  alive = solvers.live(gram)

  def body(k, carry):
    coef, target = carry
    j = perms[:, k]
    dots = jnp.einsum("is,is->i", coef, gram[:, j].T)
    norm_i = jnp.sqrt(jnp.maximum(jnp.einsum("is,st,it->i", coef, gram, coef), 1e-30))
    cos = dots / (norm_i * norms[j])
    phi = target[rows, j]
    pair = (j != rows) & alive & alive[j]
    act = (cos < phi) & pair
    scale = norm_i * (phi * jnp.sqrt(1 - cos ** 2) - cos * jnp.sqrt(1 - phi ** 2)) / (
        norms[j] * jnp.sqrt(jnp.maximum(1 - phi ** 2, 1e-12)))
    coef = coef.at[rows, j].add(jnp.where(act, scale, 0.0))
    target = target.at[rows, j].set(jnp.where(pair, (1 - beta) * phi + beta * cos, phi))
    return coef, target

  return jax.lax.fori_loop(0, t, body, (jnp.eye(t, dtype=gram.dtype), target))


class GradVac(base.Method):
  kind = "gradient"

  def __init__(self, beta: float):
    self.beta = beta

  def init(self, num_tasks):
    return {"target_cos": jnp.zeros((num_tasks, num_tasks), jnp.float32)}

  def combine(self, gram, state, ctx):
    coef, target = vaccinate(gram, pcgrad.orders(ctx.rng, gram.shape[0]), state["target_cos"], self.beta)
    return solvers.mean_live(gram) @ coef, {"target_cos": target}


@base.register("gradvac")
@gin.configurable("gradvac", module="mtl_jax.weighting")
def gradvac(num_tasks: int, beta: float = 0.01) -> base.Method:
  if not 0 < beta <= 1:
    raise ValueError(f"weighting.gradvac.beta={beta!r} must be in (0, 1] (the EMA rate of the target cosines)")
  return GradVac(float(beta))
