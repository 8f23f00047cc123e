"""Cross-stitch networks (Misra, Shrivastava, Gupta, Hebert, CVPR 2016).

One column per task; after every layer the T columns are mixed by a learned
alpha_k in R^{T x T} (initialised identity-heavy); no subspaces, no layer mix: a
task's head reads its own column's last layer. All T columns run on every example.
"""

import flax.linen as nn
import gin

from mtl_jax.sharing.base import SharingStrategy, register
from mtl_jax.sharing.columns import MixedColumns


class CrossStitchSharing(SharingStrategy):
  alpha_diagonal: float = 0.9

  @nn.compact
  def __call__(self, x, mask, task_id, deterministic: bool = True, grouped: bool = False):
    return MixedColumns(self.config, self.num_tasks, num_subspaces=1, alpha_init="imbalanced",
                        alpha_diagonal=self.alpha_diagonal, name="cross_stitch")(x, mask, task_id, deterministic)


@register("cross_stitch")
@gin.configurable("cross_stitch")
def cross_stitch(config, num_tasks, alpha_diagonal: float = 0.9):
  """alpha_diagonal: initial self-weight of each column; the rest of the row is spread evenly (rows sum to 1)."""
  if not 0.0 <= alpha_diagonal <= 1.0:
    raise ValueError(f"cross_stitch.alpha_diagonal must be in [0, 1], got {alpha_diagonal!r}")
  return CrossStitchSharing(config, num_tasks, alpha_diagonal=float(alpha_diagonal))
