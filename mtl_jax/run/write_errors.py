"""Disk full / write errors (checkpoint, results, TensorBoard) as one line, partial files removed.

Why: a full disk during an orbax save surfaced as dozens of tracebacks and no advice.
`describe(error)` recognises a write failure anywhere in the exception chain (ENOSPC,
EDQUOT, EROFS, EIO, EFBIG, or their text in tensorstore / TF messages), removes the
partial checkpoint directories orbax leaves behind (they hold the space and are never
restored), and returns the line: MODEL_DIR, the step, the free space and the last good
checkpoint. Running the same command once there is space resumes from that checkpoint
(the usual exact resume).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pathlib
import re
import shutil
import sys
import threading

from mtl_jax.run import checkpoints, crash_site

ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG}
_TEXT = re.compile(r"No space left on device|Disk quota exceeded|Read-only file system|File too large|"
                   r"\bENOSPC\b|\bEDQUOT\b|OS error 28\b|errno 28\b", re.I)
_REASONS = {"enospc": "No space left on device", "os error 28": "No space left on device",
            "errno 28": "No space left on device", "edquot": "Disk quota exceeded"}
_PARTIAL = re.compile(r"(checkpoints(?:_best)?)/(\d+)\.orbax-checkpoint-tmp")
_WHAT = (("results.json", "writing results"),  # first: the final results.json is written from Checkpoints.close
         ("orbax", "saving a checkpoint"), ("checkpoints", "saving a checkpoint"),
         ("tfevents", "writing TensorBoard summaries"),
         ("evaluation.py", "writing results"), ("metric_writers", "writing TensorBoard summaries"),
         ("tensorboard", "writing TensorBoard summaries"), ("run_spec.py", "writing run_spec.json"),
         ("lock.py", "creating the lock file"))


def write_failure(error: BaseException) -> BaseException | None:
  """The exception in the chain that is a failed write, if any."""
  errors = crash_site.chain(error)
  by_errno = [e for e in errors if isinstance(e, OSError) and e.errno in ERRNOS]
  return (by_errno or [e for e in errors if _TEXT.search(str(e))] or [None])[-1]  # innermost: the original


class _QuietWriteFailures(logging.Filter):
  """Drops orbax's background-thread ERROR records (with tracebacks) for a failed write, and asyncio's
  'exception was never retrieved' records for the same writes: the run ends with one line saying it,
  and the cascade that follows is noise."""

  def filter(self, record):
    exc = record.exc_info[1] if record.exc_info else None
    failing = (exc is not None and aftermath(exc)) or _TEXT.search(record.getMessage())
    if failing:
      _SEEN[0] = True
    return not failing and not (_SEEN[0] and "Save Finalize thread" in record.getMessage())


_SEEN = [False]


def aftermath(error: BaseException) -> bool:
  """A failed write, or what tensorstore's still-running writes hit after it: orbax's event loop closed
  under them ('Event loop is closed' from call_soon_threadsafe, printed through sys.excepthook)."""
  return write_failure(error) is not None or (isinstance(error, RuntimeError) and "Event loop is closed" in str(error))


def _hooks(log_filter):
  """Installs the log filter and the exception hooks that drop the aftermath; returns an undo."""
  targets = [logging.getLogger(), logging.getLogger("absl"), logging.getLogger("asyncio"),
             *logging.getLogger().handlers]
  for target in targets:
    target.addFilter(log_filter)
  saved = sys.excepthook, threading.excepthook, sys.unraisablehook
  sys.excepthook = lambda kind, value, tb: aftermath(value) or saved[0](kind, value, tb)
  threading.excepthook = lambda args: aftermath(args.exc_value) or saved[1](args)
  sys.unraisablehook = lambda args: aftermath(args.exc_value) or saved[2](args)

  def undo():
    for target in targets:
      target.removeFilter(log_filter)
    sys.excepthook, threading.excepthook, sys.unraisablehook = saved
  return undo


@contextlib.contextmanager
def quiet():
  """During a run, orbax's background write failures are not logged (the run's last line says it)."""
  _SEEN[0] = False
  undo = _hooks(_QuietWriteFailures())
  try:
    yield
  finally:
    undo()


def quiet_until_exit():
  """For the binary after a failed write: tensorstore's writes in flight keep failing against orbax's
  closed event loop until the process ends, and would print tracebacks after the run's one-line error
  (so it is no longer the last line). Not undone: the process is exiting."""
  _SEEN[0] = True
  _hooks(_QuietWriteFailures())


def human_bytes(n: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if n < 1024 or unit == "TiB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024


def _what(error: BaseException, failed: BaseException) -> str:
  names = [f for f, _, _ in crash_site.frames(error)] + [str(getattr(failed, "filename", None) or "")]
  for key, what in _WHAT:
    if any(key in f for f in reversed(names)):
      return what
  return "writing"


def describe(error: BaseException) -> str | None:
  """The one-line message for a write failure (cleaning up partial checkpoints), else None."""
  failed = write_failure(error)
  if failed is None:
    return None
  local = crash_site.train_locals(error)
  model_dir = local.get("model_dir")
  if not isinstance(model_dir, pathlib.Path):
    name = getattr(failed, "filename", None)
    model_dir = pathlib.Path(name).parent if name else pathlib.Path.cwd()
  removed = checkpoints.remove_partial(model_dir)
  last = checkpoints.last_complete_step(model_dir)
  probe = model_dir
  while not probe.exists() and probe != probe.parent:
    probe = probe.parent
  free = human_bytes(shutil.disk_usage(probe).free)
  step = crash_site.step_of(local)
  said = _TEXT.search(str(failed))
  reason = (os.strerror(failed.errno) if isinstance(failed, OSError) and failed.errno in ERRNOS
            else _REASONS.get(said.group(0).lower(), said.group(0)) if said else type(failed).__name__)
  which = _PARTIAL.search(str(failed))
  what = (f"saving the {'best ' if which.group(1).endswith('best') else ''}checkpoint of step {which.group(2)}"
          if which else _what(error, failed))
  kept = (f"the last good checkpoint is step {last} ({model_dir / 'checkpoints' / str(last)})" if last is not None
          else "no checkpoint was written yet")
  cleaned = f", {removed} partial checkpoint(s) removed" if removed else ""
  return (f"cannot write to MODEL_DIR {model_dir} at step {step if step is not None else '?'} while {what}: "
          f"{reason} ({free} free); {kept}{cleaned}. Free some space and run the same command again to "
          "resume from it")
