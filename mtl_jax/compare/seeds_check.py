"""experiment.seeds_per_step checked before anything is written (one line).

Apart from seed_groups.py (which groups grid cells and so imports grid) because grid.Experiment calls this
from its own validate: in one module they would import each other.
"""

from __future__ import annotations

SEED_BINDING = "trainer.train.seed"


def check(seeds_per_step, seed_binding: str) -> int:
  if not isinstance(seeds_per_step, int) or isinstance(seeds_per_step, bool) or seeds_per_step < 1:
    raise ValueError(f"experiment.seeds_per_step must be an int >= 1, got {seeds_per_step!r}")
  if seeds_per_step > 1 and seed_binding != SEED_BINDING:
    raise ValueError(f"experiment.seeds_per_step={seeds_per_step} needs experiment.seed_binding={SEED_BINDING!r} "
                     f"(the trainer's seeds), got {seed_binding!r}; use seeds_per_step=1")
  return seeds_per_step
