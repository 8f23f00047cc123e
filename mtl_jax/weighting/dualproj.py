"""dualproj (the GEM projection, Lopez-Paz & Ranzato 2017, eq. 11, as a multi-task
aggregator in torchjd): the mean gradient projected onto the dual cone {d : g_t . d >= 0}, the
closest update that conflicts with no task. In weights: alpha = argmin_{w >= u} w^T M w with u
the mean (solvers.dual_cone). Exact (torchjd adds a 1e-4 ridge to its normalised Gram, which
moves its published values in the 4th digit). Zero rows: left out of the mean (solvers.live);
they add no constraint."""

import gin

from mtl_jax.weighting import base, solvers


class DualProj(base.Method):
  kind = "gradient"

  def __init__(self, iters: int):
    self.iters = iters

  def combine(self, gram, state, ctx):
    g, _ = solvers.normalized(gram)
    return solvers.dual_cone(g, solvers.mean_live(g), self.iters), state


@base.register("dualproj")
@gin.configurable("dualproj", module="mtl_jax.weighting")
def dualproj(num_tasks: int, iters: int = 200) -> base.Method:
  return DualProj(solvers.check_iters("dualproj", iters))
