"""The run's pretrained-trunk settings, bound in gin (`gin/pretrained/*.gin`).

    pretrained.checkpoint = 'all-MiniLM-L6-v2'    # a named model or a local HF-layout directory
    pretrained.pooling = 'mean'                   # 'mean' | 'cls'; None: the checkpoint's own
    pretrained.dropout_rate = None                # None: the checkpoint's hidden_dropout_prob
    pretrained.expert_noise = 0.0                 # MMoE: relative noise breaking expert symmetry

With `checkpoint` unset (the default) a run trains its encoder from scratch with the
task set's own vocabulary; set, the run's vocabulary, encoder architecture and initial
trunk all come from the checkpoint.
"""

from __future__ import annotations

import dataclasses

import gin

POOLINGS = ("mean", "cls")


@gin.configurable("pretrained")
@dataclasses.dataclass(frozen=True)
class Pretrained:
  checkpoint: str | None = None
  pooling: str | None = None
  dropout_rate: float | None = None
  expert_noise: float = 0.0

  def __post_init__(self):
    if self.pooling is not None and self.pooling not in POOLINGS:
      raise ValueError(f"pretrained.pooling must be one of {POOLINGS} or None, got {self.pooling!r}")
    if not self.expert_noise >= 0:
      raise ValueError(f"pretrained.expert_noise must be >= 0, got {self.expert_noise!r}")


def current() -> Pretrained:
  """The settings as gin binds them now (all defaults outside a configured run)."""
  return Pretrained()
