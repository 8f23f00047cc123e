"""Fault injection for the reliability tests: MTL_JAX_FAULTS=kind@N[,kind@N...].

Why: a full disk, a device OOM or a signal in the middle of a save cannot be produced on
demand on a CI machine; these hooks raise the same exceptions (or send the same signal)
at a chosen step, through the real code paths. Unset (always, outside tests) nothing is
patched. Used by train.main as `with faults.from_env(): ...`; patches are undone after.

  enospc_checkpoint@N   the periodic save at step N fails with ENOSPC (after leaving a partial dir)
  enospc_results@N      writing results.json at step N fails with ENOSPC
  enospc_tensorboard@N  the train summary writer fails with ENOSPC at step N
  oom_train_step@N      train step N raises XLA's RESOURCE_EXHAUSTED
  sigterm_eval@K        SIGTERM in the middle of the K-th evaluation of this process
  sigterm_save@N        SIGTERM while the checkpoint of step N is being written
  sigterm_twice_save@N  the same, and a second SIGTERM while the preemption save is closing
  kill_after_results@N  SIGKILL right after results.json of step N is written (the final one: the moment a
                        run looks finished; its checkpoint must already be committed, run/finished.py)
  slow_steps@N          every train step from step N on takes 0.25 s longer (time to signal a running cell)
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal

ENV = "MTL_JAX_FAULTS"
KINDS = ("enospc_checkpoint", "enospc_results", "enospc_tensorboard", "oom_train_step", "sigterm_eval",
         "sigterm_save", "sigterm_twice_save", "kill_after_results", "slow_steps")


def parse(text: str) -> dict[str, int]:
  faults = {}
  for item in filter(None, (t.strip() for t in text.split(","))):
    kind, _, n = item.partition("@")
    if kind not in KINDS or not n.isdigit():
      raise ValueError(f"{ENV} item {item!r} must be KIND@N with KIND one of {KINDS}")
    faults[kind] = int(n)
  return faults


def _enospc(what: str) -> OSError:
  return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), what)


def _sigterm():
  os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def from_env():
  faults = parse(os.environ.get(ENV, ""))
  if not faults:
    yield
    return
  from clu import metric_writers
  import jax
  from mtl_jax.run import checkpoints
  from mtl_jax.step import evaluation, steps
  patched = []

  def patch(owner, name, make):
    original = getattr(owner, name)
    patched.append((owner, name, original))
    setattr(owner, name, make(original))

  if "enospc_checkpoint" in faults or "sigterm_save" in faults or "sigterm_twice_save" in faults:
    def save(original):
      def wrapped(self, step, state, meta, force=False):
        if step == faults.get("enospc_checkpoint") and (force or step % self.period == 0):
          partial = self.model_dir / "checkpoints" / f"{step}.orbax-checkpoint-tmp-fault"
          partial.mkdir(parents=True, exist_ok=True)
          (partial / "half_written").write_bytes(b"\0" * 1024)
          raise _enospc(str(partial / "half_written"))
        saved = original(self, step, state, meta, force)
        if saved and step in (faults.get("sigterm_save"), faults.get("sigterm_twice_save")):
          _sigterm()  # the save is in flight (orbax writes asynchronously)
          self._fault_second = step == faults.get("sigterm_twice_save")
        return saved
      return wrapped
    patch(checkpoints.Checkpoints, "save", save)

    def close(original):
      def wrapped(self):
        if getattr(self, "_fault_second", False):
          self._fault_second = False
          _sigterm()  # while the preemption save is being finished
        return original(self)
      return wrapped
    patch(checkpoints.Checkpoints, "close", close)
  if "enospc_results" in faults or "kill_after_results" in faults:
    def write_results(original):
      def wrapped(model_dir, step, record):
        if step == faults.get("enospc_results"):
          raise _enospc(os.path.join(str(model_dir), "results.json.tmp"))
        written = original(model_dir, step, record)
        if step == faults.get("kill_after_results"):
          os.kill(os.getpid(), signal.SIGKILL)
        return written
      return wrapped
    patch(evaluation, "write_results", write_results)
  if "enospc_tensorboard" in faults:
    def write_scalars(original):
      def wrapped(self, step, scalars):
        if step == faults["enospc_tensorboard"]:
          raise _enospc("events.out.tfevents")
        return original(self, step, scalars)
      return wrapped
    patch(metric_writers.AsyncMultiWriter, "write_scalars", write_scalars)
  if "slow_steps" in faults:
    import time

    def slow_step(original):
      def run_train_step(self, state, batch):
        if int(state.step) + 1 >= faults["slow_steps"]:
          time.sleep(0.25)
        return original(self, state, batch)
      return run_train_step
    patch(steps.Steps, "run_train_step", slow_step)
  if "oom_train_step" in faults:
    def run_train_step(original):
      def run_train_step(self, state, batch):  # named as the real one: the OOM message says where
        if int(state.step) + 1 == faults["oom_train_step"]:
          raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
                                           "123456789 bytes.")
        return original(self, state, batch)
      return run_train_step
    patch(steps.Steps, "run_train_step", run_train_step)
  if "sigterm_eval" in faults:
    calls = [0]

    def evaluate(original):
      def wrapped(self, predict):
        calls[0] += 1
        if calls[0] == faults["sigterm_eval"]:
          def predict_then_signal(batch, _sent=[]):
            out = predict(batch)
            if not _sent:
              _sent.append(_sigterm())
            return out
          return original(self, predict_then_signal)
        return original(self, predict)
      return wrapped
    patch(evaluation.Evaluator, "evaluate", evaluate)
  try:
    yield
  finally:
    for owner, name, original in reversed(patched):
      setattr(owner, name, original)
