"""orbax-checkpoint: periodic atomic saves (keep N) and resume from the latest.

A checkpoint holds the TrainState (restored straight into its shardings, so a
different mesh works) and a small JSON 'meta' item: the number of batches the
input pipeline has produced, so a resumed run continues the same stream.
"""

from __future__ import annotations

import pathlib

import orbax.checkpoint as ocp


class Checkpoints:

  def __init__(self, model_dir: str | pathlib.Path, keep: int = 3, period: int = 100):
    if keep < 1 or period < 1:
      raise ValueError(f"checkpoint keep={keep} and period={period} must be >= 1")
    self.period = period
    self.manager = ocp.CheckpointManager(
        pathlib.Path(model_dir).absolute() / "checkpoints",
        item_names=("state", "meta"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state, meta: dict, force: bool = False) -> bool:
    if not force and step % self.period:
      return False
    if step in self.manager.all_steps():
      return False
    return self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, step: int, abstract_state):
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored.state, dict(restored.meta)

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
