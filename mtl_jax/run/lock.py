"""One trainer per MODEL_DIR: a lock file with its owner and a heartbeat.

Why: two trainers on one MODEL_DIR interleave checkpoints and results.json, and the
directory then belongs to neither run. `hold(model_dir)` (called where the trainer
first writes) creates MODEL_DIR/trainer.lock holding {host, pid, since}; a background
thread touches it every `lock.heartbeat_s`. A second trainer is refused with one line
naming the owner. A lock is stale, and taken over with a warning, when its owner is on
this host and its process is gone, or (another host, on a shared file system) when its
heartbeat is older than `lock.stale_after_s`. Multi-host runs hold it once: process 0
takes it, the others agree on the outcome. In-process reruns (tests, notebooks) re-take
their own lock. Released by `release_all()` (train.py) or at exit.

mtl-compare / mtl-transfer take a cell's lock themselves right before launching it (`hold_for_launch`), so
two grids on one experiment never launch the same cell, and hand it to the trainer they start: the child
finds its token in MTL_JAX_LOCK_TOKEN and adopts the lock (`hold`; a trainer of several seeds, one per
MODEL_DIR, gets their tokens comma-separated: compare/seed_groups.py). A lock whose MODEL_DIR `hold` created is
removed with the directory (when still empty) on release: a run refused by a bad setting leaves nothing.

    lock.stale_after_s = 300    # gin: no heartbeat for this long -> another host's lock is stale
    lock.heartbeat_s = 30
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import pathlib
import socket
import threading
import time
import uuid

import gin

log = logging.getLogger("mtl_jax")
FILENAME = "trainer.lock"
TOKEN_ENV = "MTL_JAX_LOCK_TOKEN"  # a launcher's lock that the trainer it starts adopts
_HELD: dict[pathlib.Path, "_Held"] = {}    # trainers' locks (released by release_all)
_LAUNCH: dict[pathlib.Path, "_Held"] = {}  # grid runners' locks, handed to the cell they launch


class LockedError(RuntimeError):
  """MODEL_DIR is in use by a live trainer."""


@gin.configurable("lock")
def settings(stale_after_s: float = 300.0, heartbeat_s: float = 30.0) -> tuple[float, float]:
  if not (isinstance(stale_after_s, (int, float)) and isinstance(heartbeat_s, (int, float))
          and 0 < heartbeat_s < stale_after_s):
    raise ValueError(f"lock.heartbeat_s={heartbeat_s!r} and lock.stale_after_s={stale_after_s!r} must be "
                     "numbers with 0 < heartbeat_s < stale_after_s")
  return float(stale_after_s), float(heartbeat_s)


def _start_time(pid: int) -> str | None:
  """The process's start time in clock ticks (Linux), so a reused pid is not taken for the owner."""
  try:
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(pid: int, started: str | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass
  now = _start_time(pid)
  return started is None or now is None or now == started


def read(model_dir) -> tuple[dict, float] | None:
  """(owner record, seconds since its heartbeat), or None when there is no lock file."""
  path = pathlib.Path(model_dir) / FILENAME
  try:
    text, mtime = path.read_text(), path.stat().st_mtime
  except FileNotFoundError:
    return None
  try:
    record = json.loads(text)
  except ValueError:  # being written this instant, or damaged: judged by its age alone
    record = {}
  return record, max(0.0, time.time() - mtime)


def describe(record: dict) -> str:
  return f"host {record.get('host', '?')} pid {record.get('pid', '?')} since {record.get('since', '?')}"


def stale_reason(record: dict, age: float, stale_after_s: float) -> str | None:
  """Why the lock's owner is gone (None: it is live)."""
  if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
    if record["pid"] == os.getpid():
      return "it is this process's own lock"
    if not _alive(record["pid"], record.get("started")):
      return f"process {record['pid']} is gone"
    return None
  if age > stale_after_s:
    return f"no heartbeat for {age:.0f}s (> lock.stale_after_s={stale_after_s:g})"
  return None


def live_owner(model_dir) -> dict | None:
  """The record of a live trainer holding MODEL_DIR (for mtl-compare), else None."""
  found = read(model_dir)
  if found is None:
    return None
  record, age = found
  return None if stale_reason(record, age, settings()[0]) else record


def _record() -> dict:
  return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid()),
          "since": datetime.datetime.now().isoformat(timespec="seconds"), "token": uuid.uuid4().hex}


def _write_new(path: pathlib.Path, record: dict) -> bool:
  """Atomically creates the lock with its full content; False if one exists."""
  tmp = path.with_name(f".{FILENAME}.{record['token']}")
  tmp.write_text(json.dumps(record))
  try:
    os.link(tmp, path)
    return True
  except FileExistsError:
    return False
  finally:
    tmp.unlink(missing_ok=True)


def _take_over(path: pathlib.Path, seen: dict, record: dict) -> bool:
  """Replaces a stale lock unless another trainer took it first (a 'break' file serialises takers)."""
  breaker = path.with_name(FILENAME + ".break")
  try:
    fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
  except FileExistsError:
    if time.time() - breaker.stat().st_mtime > 60:  # a taker died mid-takeover
      breaker.unlink(missing_ok=True)
    return False
  os.close(fd)
  try:
    found = read(path.parent)
    if found is not None and found[0] != seen:
      return False
    path.unlink(missing_ok=True)
    return _write_new(path, record)
  finally:
    breaker.unlink(missing_ok=True)


class _Held:
  """A lock this process owns, kept fresh by a daemon thread."""

  def __init__(self, path: pathlib.Path, record: dict, heartbeat_s: float, created: bool = False,
               handed_over: bool = False):
    self.path, self.record, self._stop = path, record, threading.Event()
    self.created, self.handed_over = created, handed_over  # handed_over: a launcher's lock a child adopts
    self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True, name="mtl_jax-lock")
    self._thread.start()

  def ours(self) -> bool:
    found = read(self.path.parent)
    return found is not None and found[0].get("token") == self.record["token"]

  def _beat(self, every: float):
    warned = False
    while not self._stop.wait(every):
      if self.ours():
        try:
          os.utime(self.path)
        except OSError:
          pass
      elif not warned and not self.handed_over:
        warned = True
        log.warning("mtl_jax: WARNING: another trainer took over the lock %s", self.path)

  def release(self):
    self._stop.set()
    if self.ours():
      self.path.unlink(missing_ok=True)
      if self.created:  # nothing but the lock was written: leave no trace
        try:
          self.path.parent.rmdir()
        except OSError:
          pass


def _adopt(path: pathlib.Path, seen: dict, record: dict) -> bool:
  """Replaces the lock our launcher took for us (its token is in our environment) with our own record."""
  if not seen.get("token") or seen.get("token") not in os.environ.get(TOKEN_ENV, "").split(","):  # K seeds: K
    return False
  tmp = path.with_name(f".{FILENAME}.{record['token']}")
  tmp.write_text(json.dumps({**record, "from_launcher": seen.get("pid")}))
  os.replace(tmp, path)
  return True


def _acquire(model_dir: pathlib.Path, created: bool = False, into=None, handed_over: bool = False) -> str:
  into = _HELD if into is None else into
  stale_after_s, heartbeat_s = settings()
  path = model_dir / FILENAME
  record = _record()
  for _ in range(20):  # a few rounds of races with other takers
    if _write_new(path, record):
      into[model_dir] = _Held(path, record, heartbeat_s, created, handed_over)
      return record["token"]
    found = read(model_dir)
    if found is None:
      continue
    owner, age = found
    if _adopt(path, owner, record):
      into[model_dir] = _Held(path, record, heartbeat_s, created, handed_over)
      return record["token"]
    reason = stale_reason(owner, age, stale_after_s)
    if reason is None:
      raise LockedError(
          f"MODEL_DIR {model_dir} is in use by another trainer ({describe(owner)}, heartbeat {age:.0f}s ago); "
          f"wait for it to finish, stop it, or use another --gin.MODEL_DIR (if it is surely gone, delete "
          f"{path})")
    if _take_over(path, owner, record):
      message = f"mtl_jax: WARNING: taking over the stale lock of {describe(owner)} in {model_dir} ({reason})"
      if owner.get("pid") != os.getpid():
        log.warning(message)
        print(message, flush=True)
      into[model_dir] = _Held(path, record, heartbeat_s, created, handed_over)
      return record["token"]
    time.sleep(0.05)
  raise LockedError(f"MODEL_DIR {model_dir}: could not take {path} (other trainers keep racing for it); "
                    "run one trainer per MODEL_DIR")


def hold(model_dir) -> pathlib.Path:
  """Creates MODEL_DIR and makes this run its only trainer (collectively on multi-host runs)."""
  import jax  # here, so mtl-compare reads locks without importing JAX
  import numpy as np
  from jax.experimental import multihost_utils
  model_dir = pathlib.Path(model_dir).absolute()
  error = None
  if jax.process_index() == 0:
    held = _HELD.pop(model_dir, None)
    if held is not None:  # an earlier in-process run's lock: re-taken below
      held.release()
    created = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
      _acquire(model_dir, created)
    except (LockedError, OSError) as e:  # raised after the others heard of it
      error = e
  ok = error is None
  if jax.process_count() > 1:
    ok = bool(np.all(multihost_utils.process_allgather(np.bool_(ok))))
    model_dir.mkdir(parents=True, exist_ok=True)
  if error is not None:
    raise error
  if not ok:
    raise LockedError(f"MODEL_DIR {model_dir} is in use by another trainer (process 0 says who)")
  return model_dir


def hold_for_launch(model_dir) -> str:
  """A grid runner takes a cell's lock before launching it (LockedError: a live trainer or runner has it);
  returns the token to pass to the child as MTL_JAX_LOCK_TOKEN. No JAX import (mtl-compare)."""
  model_dir = pathlib.Path(model_dir).absolute()
  model_dir.mkdir(parents=True, exist_ok=True)
  return _acquire(model_dir, into=_LAUNCH, handed_over=True)


def release_launch(model_dir) -> None:
  """The runner's lock after its child exited: removed unless the child (or anyone) holds it now."""
  held = _LAUNCH.pop(pathlib.Path(model_dir).absolute(), None)
  if held is not None:
    held.release()


def release_all() -> None:
  """Releases every lock this process holds (end of a run)."""
  while _HELD:
    _, held = _HELD.popitem()
    held.release()


atexit.register(release_all)
