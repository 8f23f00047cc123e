"""mgda (Sener & Koltun 2018): the min-norm convex combination of the task gradients,
argmin_{w in simplex} ||sum_t w_t g_t||^2 (a common descent direction when one exists).
With `weighting.rep_grad = True` (gin/weighting/mgda_ub.gin) the gradients are taken
w.r.t. the shared representation: MGDA-UB, the paper's upper-bound variant.

Zero rows (solvers.live): left out of the simplex (weight 0). The paper's problem would put
all weight on a zero gradient and return d = 0 (torchjd does), stalling every other task."""

import gin

from mtl_jax.weighting import base, solvers


class MGDA(base.Method):
  kind = "gradient"

  def __init__(self, iters: int):
    self.iters = iters

  def combine(self, gram, state, ctx):
    g, _ = solvers.normalized(gram)
    return solvers.min_norm_simplex(g, self.iters, solvers.live(g)), state


@base.register("mgda")
@gin.configurable("mgda", module="mtl_jax.weighting")
def mgda(num_tasks: int, iters: int = 200) -> base.Method:
  return MGDA(solvers.check_iters("mgda", iters))
