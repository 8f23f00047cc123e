"""orbax-checkpoint: periodic atomic saves (keep N), a best-by-validation copy, and a
restore that survives a corrupt latest checkpoint.

A checkpoint holds the TrainState (restored straight into the current shardings, so
a different mesh works) and a JSON 'meta' item with the number of batches the input
pipeline has produced, so a resumed run continues the same stream. orbax writes to a
temporary directory and renames it when complete, so a kill during a save leaves the
previous checkpoint intact. A checkpoint that fails to restore (truncated or missing
files) is moved aside to MODEL_DIR/corrupt_checkpoints/ (never deleted) and the next
older one is used. Partial (temporary) checkpoint directories from a killed or failed
save are removed when the next trainer opens MODEL_DIR (it holds the MODEL_DIR lock).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from mtl_jax.run import finished

log = logging.getLogger("mtl_jax")


def _all_processes(ok: bool) -> bool:
  """True when `ok` holds on every process (so all of them take the same branch)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.bool_(ok))))


def _args(state, meta):
  return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))


class Checkpoints:

  def __init__(self, model_dir: str | pathlib.Path, keep: int = 3, period: int = 100):
    if not isinstance(keep, int) or keep < 1 or not isinstance(period, int) or period < 1:
      raise ValueError(f"checkpoint keep={keep!r} and period={period!r} must be ints >= 1; "
                       "set train.keep_checkpoints / train.checkpoint_period")
    self.model_dir = pathlib.Path(model_dir).absolute()
    self.period = period
    self.manager = ocp.CheckpointManager(
        self.model_dir / "checkpoints", item_names=("state", "meta"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True))
    self.best = ocp.CheckpointManager(
        self.model_dir / "checkpoints_best", item_names=("state", "meta"),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True, cleanup_tmp_directories=True))
    self._pending_results = None  # (step, record): the final results.json, written once its checkpoint is committed
    path = self.model_dir / "best.json"  # read once: every process decides from the same record
    self._best = json.loads(path.read_text()) if path.exists() else None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state, meta: dict, force: bool = False) -> bool:
    self.manager.check_for_errors()  # every step: a failed background save stops the run at once
    if not force and step % self.period:
      return False
    if step in self.manager.all_steps():
      return False
    return self.manager.save(step, args=_args(state, meta), force=True)

  def restore(self, step: int, abstract_state):
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored.state, dict(restored.meta)

  def restore_latest_good(self, abstract_state):
    """(state, meta, step) of the newest checkpoint that restores, or None if there is none.

    Unreadable checkpoints are moved aside with a warning; if every checkpoint is
    unreadable this raises rather than silently starting from scratch.
    """
    steps = sorted(self.manager.all_steps(), reverse=True)
    for step in steps:
      try:
        state, meta = self.restore(step, abstract_state)
        error = None
      except Exception as e:  # orbax/tensorstore raise many types for damaged files
        error = e
      if _all_processes(error is None):
        return state, meta, step
      reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}" if error else "unreadable on another process"
      moved = self._move_aside(step)
      message = (f"mtl_jax: WARNING: checkpoint at step {step} is unreadable ({reason}); "
                 f"moved to {moved}; falling back to an older checkpoint")
      log.warning(message)
      print(message, flush=True)
    if steps:
      raise RuntimeError(f"every checkpoint in {self.model_dir / 'checkpoints'} is unreadable "
                         f"(steps {steps}, moved to corrupt_checkpoints/); delete the directory to start over")
    return None

  def _move_aside(self, step: int) -> pathlib.Path:
    """Process 0 moves the checkpoint; everyone waits for it, then re-reads the directory."""
    src = self.model_dir / "checkpoints" / str(step)
    dst_root = self.model_dir / "corrupt_checkpoints"
    dst = dst_root / str(step)
    n = 1
    while dst.exists():
      dst, n = dst_root / f"{step}.{n}", n + 1
    if jax.process_index() == 0:
      dst_root.mkdir(exist_ok=True)
      shutil.move(str(src), str(dst))
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"mtl_jax_move_aside_{step}")
    self.manager.reload()
    return dst

  # --- best checkpoint by validation score -------------------------------------------
  def best_record(self) -> dict | None:
    return self._best

  def maybe_save_best(self, step: int, state, meta: dict, score: float, metric: str, mode: str) -> bool:
    """Saves `state` (collectively) as the best checkpoint if `score` beats the recorded best."""
    best = self._best
    if best is not None and best["metric"] == metric:
      better = score > best["score"] if mode == "max" else score < best["score"]
      if not better or step == best["step"]:
        return False
    self.best.save(step, args=_args(state, meta), force=True)
    self.best.wait_until_finished()
    self._best = {"step": int(step), "score": float(score), "metric": metric, "mode": mode}
    if jax.process_index() == 0:
      tmp = self.model_dir / "best.json.tmp"
      tmp.write_text(json.dumps(self._best))
      os.replace(tmp, self.model_dir / "best.json")
    return True

  def results_after_save(self, model_dir, step: int, record: dict) -> dict:
    """evaluation.write_results for the final step: held until `close()` has committed this step's
    checkpoint (run/finished.py: a finished run is results.json AND its checkpoint); returns what it writes."""
    assert pathlib.Path(model_dir).absolute() == self.model_dir, (model_dir, self.model_dir)
    self._pending_results = (int(step), record)
    return {**record, "step": int(step)}

  def close(self):
    for manager in (self.manager, self.best):
      manager.wait_until_finished()
      manager.close()
    if self._pending_results is not None:
      step, record = self._pending_results
      self._pending_results = None
      if step not in finished.committed_steps(self.model_dir):
        raise RuntimeError(f"the final checkpoint {self.model_dir / 'checkpoints' / str(step)} was not committed; "
                           "results.json was not written. Run the same command again to finish the run")
      from mtl_jax.step import evaluation  # at call time: the fault-injection hook patches it
      evaluation.write_results(self.model_dir, step, record)


# --- after a failed write (mtl_jax/run/write_errors.py) -----------------------------------
def _is_partial(path: pathlib.Path) -> bool:
  return path.is_dir() and not path.name.isdigit() and "tmp" in path.name


def remove_partial(model_dir) -> int:
  """Deletes the temporary directories of unfinished saves (process 0); returns how many."""
  if jax.process_index() != 0:
    return 0
  removed = 0
  for root in ("checkpoints", "checkpoints_best"):
    folder = pathlib.Path(model_dir) / root
    for path in (folder.iterdir() if folder.is_dir() else ()):
      if _is_partial(path):
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
  for name in ("best.json.tmp", "results.json.tmp", "run_spec.json.tmp"):
    (pathlib.Path(model_dir) / name).unlink(missing_ok=True)
  return removed


def last_complete_step(model_dir) -> int | None:
  """The newest finished periodic checkpoint on disk (what a rerun resumes from), or None."""
  return max(finished.committed_steps(model_dir), default=None)
