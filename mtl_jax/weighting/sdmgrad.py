"""sdmgrad (Xiao et al. 2023, direction-oriented multi-objective gradient): simplex weights w
kept across steps (TrainState) and moved by `iters` projected SGD steps (learning rate 5,
momentum 0.5, as the official code / LibMTL) on 1/2 w^T M w + lam w^T M 1/T, with M the Gram
matrix scaled by the squared mean gradient norm; the update is (G^T w + lam g0) / (1 + lam)
(alpha = (w + lam / T) / (1 + lam): sums to 1, the mean scale).

One batch: the paper's unbiased version estimates M from two independent batches (xi1 xi2^T)
and the update from a third; the seam gives the Gram matrix of this step's batch, so ours is the
same-batch (deterministic-direction) variant, stated as such. Zero rows (solvers.live): left out
of the simplex and of g0, weight 0."""

import gin
import jax
import jax.numpy as jnp

from mtl_jax.weighting import base, solvers


def step_weights(gram, w, lam: float, iters: int, lr: float = 5.0, momentum: float = 0.5):
  alive = solvers.live(gram)
  norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0))
  scale = (norms.sum() / jnp.maximum(alive.sum(), 1)) ** 2 + 1e-8
  m = gram / scale
  mean = solvers.mean_live(gram)
  pull = lam * (m @ mean)

  def body(k, carry):
    w, buf = carry
    grad = m @ w + pull
    buf = jnp.where(k == 0, grad, momentum * buf + grad)
    return solvers.project_simplex(w - lr * buf, alive), buf

  w, _ = jax.lax.fori_loop(0, iters, body, (w, jnp.zeros_like(w)))
  return w, mean


class SDMGrad(base.Method):
  kind = "gradient"

  def __init__(self, lam: float, iters: int):
    self.lam, self.iters = lam, iters

  def init(self, num_tasks):
    return {"w": jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)}

  def combine(self, gram, state, ctx):
    w, mean = step_weights(gram, state["w"], self.lam, self.iters)
    return (w + self.lam * mean) / (1.0 + self.lam), {"w": w}


@base.register("sdmgrad")
@gin.configurable("sdmgrad", module="mtl_jax.weighting")
def sdmgrad(num_tasks: int, lam: float = 0.3, iters: int = 20) -> base.Method:
  if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
    raise ValueError(f"weighting.sdmgrad.lam={lam!r} must be a number >= 0 (the pull towards the mean gradient)")
  return SDMGrad(float(lam), solvers.check_iters("sdmgrad", iters))
