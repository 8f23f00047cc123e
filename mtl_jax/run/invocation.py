"""What cannot change within one mtl-train invocation, computed once for all of its lanes.

Why: a seeds-in-step run (run/seeds_in_step.py) is K `trainer.train` calls in one process, and each
used to hash every task's data, build and read its validation and test batches and count its
truncated examples again: on a tiny 6-seed launch about a quarter of the CPU (the tf.data graphs
of those pipelines are traced per call). Inside `scope()` (mtl_jax/train.py wraps each invocation
in one) `once(key, fn)` runs `fn` once per key and hands every caller that value; outside a scope
(a long-lived process, the tests after editing data) `fn` runs on every call. Values are shared, so
callers must not mutate them (`read_only` freezes numpy batches so a mutation fails loudly).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Hashable

import numpy as np

_SCOPE: dict | None = None  # key -> [lock, value], while scope() is active
_LOCK = threading.Lock()  # guards _SCOPE's dict; each key's own lock guards its computation
_UNSET = object()


@contextlib.contextmanager
def scope():
  """One invocation: `once` values live until the outermost scope exits."""
  global _SCOPE
  outer, _SCOPE = _SCOPE, ({} if _SCOPE is None else _SCOPE)
  try:
    yield
  finally:
    _SCOPE = outer


def once(key: Hashable, fn: Callable[[], Any]) -> Any:
  """fn() once per key inside a scope (other callers of the key wait for it); every call outside one.
  A call that raises stores nothing: the next caller tries again."""
  memo = _SCOPE
  if memo is None:
    return fn()
  with _LOCK:
    entry = memo.setdefault(key, [threading.Lock(), _UNSET])
  with entry[0]:
    if entry[1] is _UNSET:
      entry[1] = fn()
    return entry[1]


def read_only(batches: list[dict]) -> list[dict]:
  """Numpy batches whose arrays refuse writes (shared between lanes)."""
  for batch in batches:
    for value in batch.values():
      if isinstance(value, np.ndarray):
        value.setflags(write=False)
  return batches
