"""Sluice networks (Ruder, Bingel, Augenstein, Sogaard, AAAI 2019).

One column per task; each layer's output split into M subspaces whose T*M blocks
are mixed by a learned alpha_k in R^{TM x TM} after every layer; each task's head
reads sum_k beta[t, k] h[t, k]; an orthogonality penalty pushes each column's
subspaces apart. All T columns run on every example (see columns.py): ~T x hard.
"""

import flax.linen as nn
import gin

from mtl_jax.sharing.base import SharingStrategy, register
from mtl_jax.sharing.columns import ALPHA_INITS, MixedColumns


class SluiceSharing(SharingStrategy):
  num_subspaces: int = 2
  alpha_init: str = "imbalanced"
  beta_last: float = 0.9
  orthogonality_weight: float = 1e-3
  normalize_orthogonality: bool = True

  @nn.compact
  def __call__(self, x, mask, task_id, deterministic: bool = True, grouped: bool = False):
    return MixedColumns(self.config, self.num_tasks, num_subspaces=self.num_subspaces, alpha_init=self.alpha_init,
                        beta_last=self.beta_last, orthogonality_weight=self.orthogonality_weight,
                        normalize_orthogonality=self.normalize_orthogonality,
                        name="sluice")(x, mask, task_id, deterministic)


@register("sluice")
@gin.configurable("sluice")
def sluice(config, num_tasks, num_subspaces: int = 2, alpha_init: str = "imbalanced", beta_last: float = 0.9,
           orthogonality_weight: float = 1e-3, normalize_orthogonality: bool = True):
  """alpha_init: 'balanced' (every entry 1/TM) or 'imbalanced' (0.9 diagonal, rows sum to 1);
  beta_last: initial weight of the last layer (the rest spread evenly); normalize_orthogonality:
  divide ||G1^T G2||_F^2 by (#real tokens)^2 so the weight does not depend on batch size."""
  if alpha_init not in ALPHA_INITS:
    raise ValueError(f"sluice.alpha_init must be one of {ALPHA_INITS}, got {alpha_init!r}")
  if not isinstance(num_subspaces, int) or num_subspaces < 1 or config.d_model % num_subspaces:
    raise ValueError(f"sluice.num_subspaces must be a positive int dividing d_model={config.d_model}, "
                     f"got {num_subspaces!r}")
  if not orthogonality_weight >= 0:
    raise ValueError(f"sluice.orthogonality_weight must be >= 0, got {orthogonality_weight!r}")
  return SluiceSharing(config, num_tasks, num_subspaces=num_subspaces, alpha_init=alpha_init,
                       beta_last=float(beta_last), orthogonality_weight=float(orthogonality_weight),
                       normalize_orthogonality=bool(normalize_orthogonality))
