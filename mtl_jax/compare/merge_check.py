"""experiment.merge checked before anything is written: one line per bad setting.

Apart from merge_arms.py (which plans the arms from grid cells and so imports grid) because grid.Experiment
calls this from its own validate: in one module they would import each other.
"""

from __future__ import annotations

MERGEABLE = ("hard", "lora")  # single-task cells mtl-merge reads (mtl_jax/merge/sources.py)


def validate(exp) -> None:
  """One line for a merge axis that cannot run, before anything is written (grid.Experiment.validate)."""
  grids = dict(exp.merge_grid or {})
  if not exp.merge:
    if grids:
      raise ValueError(f"experiment.merge_grid names {sorted(grids)[0]!r} but experiment.merge is empty; "
                       "list the methods, e.g. experiment.merge = ['ties']")
    return
  from mtl_jax import gin_check
  from mtl_jax.merge import base, select
  known = base.names()
  for name in exp.merge:
    if name not in known:
      guess = gin_check.close_match(str(name), list(known))
      raise ValueError(f"experiment.merge: unknown merge method {name!r}" + (f"; did you mean {guess!r}?" if guess else "")
                       + f" (methods: {', '.join(known)})")
  if len(set(exp.merge)) != len(exp.merge):
    raise ValueError(f"experiment.merge has duplicates: {list(exp.merge)}")
  if not exp.baselines:
    raise ValueError("experiment.merge builds its arms from the single-task cells, but they are off "
                     "(experiment.baselines = False or --no_baselines); turn the baselines on")
  if exp.baseline_strategy not in MERGEABLE:
    raise ValueError(f"experiment.merge merges single-task cells of {' or '.join(MERGEABLE)} sharing; "
                     f"experiment.baseline_strategy is {exp.baseline_strategy!r}")
  for name, grid in grids.items():
    if name not in exp.merge:
      raise ValueError(f"experiment.merge_grid names {name!r}, which is not in experiment.merge {list(exp.merge)}")
    select.candidates(base.get(name), grid)  # an unknown hyperparameter: its one line
