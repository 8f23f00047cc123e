"""gin `merge.*`: the method and its validation grid (gin/merge/<method>.gin), read by mtl-merge.

    merge.method = 'ties'
    merge.grid = {'density': [0.1, 0.2], 'scaling': [0.6, 1.0]}   # axes replace the method's defaults
    merge.examples = 256                                          # Fisher / RegMean training examples per task
    merge.seed = 0                                                # DARE's drop draws
Command-line flags (--method, --grid, --examples, --seed) override what the gin files bind.
"""

from __future__ import annotations

import dataclasses

import gin


@gin.configurable("merge")
@dataclasses.dataclass(frozen=True)
class Settings:
  method: str | None = None
  grid: dict = dataclasses.field(default_factory=dict)
  examples: int = 256
  seed: int = 0

  def __post_init__(self):
    if not isinstance(self.examples, int) or self.examples < 1:
      raise ValueError(f"merge.examples must be an int >= 1, got {self.examples!r}")


def from_gin(gin_files) -> Settings:
  """The Settings the gin files bind (none: the defaults)."""
  from mtl_jax import train
  if not gin_files:
    return Settings()
  train.parse_gin(list(gin_files), [])
  try:
    return Settings()
  finally:
    gin.clear_config()
