"""moco (Fernando et al. 2023, MoCo: mitigating gradient bias): track every task's
normalised gradient with a moving estimate y_t <- y_t - beta_k (y_t - g_t l_t / ||g_t||)
(beta_k = beta / k^beta_sigma), then take one mirror-descent step on the task weights,
lambda <- softmax(lambda - gamma_k (Y Y^T + rho I) lambda) (gamma_k = gamma / k^gamma_sigma);
the shared update is Y^T lambda (lambda sums to 1: the mean scale; as LibMTL / the authors' code).

The estimates Y ([T, ...] like the shared parameters) and lambda live in TrainState; a task
absent from the batch keeps its estimate. The heads get the equal-weighted gradient."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base


class MoCo(base.GradMethod):
  buffers = ("y",)

  def __init__(self, beta, beta_sigma, gamma, gamma_sigma, rho):
    self.beta, self.beta_sigma, self.gamma, self.gamma_sigma, self.rho = beta, beta_sigma, gamma, gamma_sigma, rho

  def init(self, num_tasks):
    return {"lambda": jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32), "count": jnp.zeros((), jnp.int32)}

  def combine_grads(self, grads_T, state, ctx):
    t = ctx.loss_T.shape[0]
    present = ctx.present_T > 0
    count = state["count"] + 1
    k = count.astype(jnp.float32)
    beta, gamma = self.beta / k ** self.beta_sigma, self.gamma / k ** self.gamma_sigma
    scale = ctx.loss_T / (jnp.sqrt(base.tree_sq_norms(grads_T)) + 1e-8)

    def track(y, g):
      shape = (t,) + (1,) * (g.ndim - 1)
      new = y - beta * (y - g * scale.reshape(shape).astype(g.dtype))
      return jnp.where(present.reshape(shape), new, y)

    y = {key: jax.tree.map(track, state["grads"]["y"][key], grads_T[key]) for key in grads_T}
    leaves = [x.reshape(t, -1).astype(jnp.float32) for x in jax.tree.leaves(y)]
    yy = sum(jnp.einsum("ip,jp->ij", x, x, precision=jax.lax.Precision.HIGHEST) for x in leaves)
    lam = jax.nn.softmax(state["lambda"] - gamma * (yy + self.rho * jnp.eye(t)) @ state["lambda"])
    return (base.tree_rows(lam, y), base.mean_present(ctx), lam,
            {"lambda": lam, "count": count, "grads": {"y": y}})


@base.register("moco")
@gin.configurable("moco", module="mtl_jax.weighting")
def moco(num_tasks: int, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1, gamma_sigma: float = 0.5,
         rho: float = 0.0) -> base.Method:
  for name, value, low in (("beta", beta, 0.0), ("beta_sigma", beta_sigma, 0.0), ("gamma", gamma, 0.0),
                           ("gamma_sigma", gamma_sigma, 0.0), ("rho", rho, 0.0)):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
      raise ValueError(f"weighting.moco.{name}={value!r} must be a number >= {low:g}")
  if beta > 1:
    raise ValueError(f"weighting.moco.beta={beta!r} must be <= 1 (the tracking rate of the gradient estimates)")
  return MoCo(float(beta), float(beta_sigma), float(gamma), float(gamma_sigma), float(rho))
