"""Cells run side by side (`--parallel=N`) get disjoint CPU cores: each of the N worker slots its share.

Why: a cell is a process with XLA's and tf.data's thread pools each sized to every core, so N cells
on the same cores oversubscribe them, and threads spin and yield against each other. Measured on the
2-core box (issue #29, two 6-seed launches of the tiny sweep side by side): pinned to a core each,
hard 60.5 -> 48.0 s wall, soft 98.9 -> 68.9 s. A child is pinned right after it starts (the
interpreter has no threads yet; every thread it makes inherits the mask, and XLA / TF size their
pools from it). No pinning when N = 1, when there are fewer cores than slots, off Linux, or with
MTL_JAX_PIN_CPUS=0.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Callable

ENV = "MTL_JAX_PIN_CPUS"
_SLOT = threading.local()  # .cpus: this worker thread's cores (None: not pinned)


def shares(cpus, parallel: int) -> list[set[int]] | None:
  """`cpus` split into `parallel` contiguous, disjoint, near-equal shares; None when it cannot be."""
  cpus = sorted(cpus)
  if parallel <= 1 or len(cpus) < parallel:
    return None
  size, extra = divmod(len(cpus), parallel)
  out, at = [], 0
  for i in range(parallel):
    n = size + (i < extra)
    out.append(set(cpus[at:at + n]))
    at += n
  return out


def worker_initializer(parallel: int) -> Callable[[], None]:
  """A ThreadPoolExecutor initializer giving each of its `parallel` workers its own share of the cores."""
  enabled = os.environ.get(ENV, "1") != "0" and hasattr(os, "sched_getaffinity")
  parts = shares(os.sched_getaffinity(0), parallel) if enabled else None
  counter, lock = itertools.count(), threading.Lock()

  def init():
    with lock:
      index = next(counter)
    _SLOT.cpus = parts[index % len(parts)] if parts else None

  return init


def current() -> set[int] | None:
  """The cores of the calling worker's slot, None outside a pinned pool."""
  return getattr(_SLOT, "cpus", None)


def pin(pid: int) -> None:
  """Restricts process `pid` to the calling worker's cores (nothing outside a pinned pool; a process that
  is already gone is left alone)."""
  cpus = current()
  if cpus:
    try:
      os.sched_setaffinity(pid, cpus)
    except (ProcessLookupError, PermissionError):
      pass
