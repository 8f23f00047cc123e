"""Two process-wide settings of the CPython / glibc host runtime that a training process wants.

Why (issue #29, perf on one 6-seed launch of the relatedness sweep, 2 idle cores): a quarter of
its CPU was the kernel and a twelfth Python's cyclic garbage collector, not the model.
- glibc malloc: XLA:CPU allocates and frees its buffers at every step; by default glibc hands freed
  memory back to the kernel (heap trim, and an mmap / munmap per large block), so the next step
  page-faults and zeroes it again. `tune_allocator` keeps freed memory in the process (trim
  threshold 1 GiB) and serves blocks below 64 MiB from the heap. Measured: 20.3 -> 8.8 s of kernel
  CPU per launch, 78 -> 61 CPU-s. Memory the run has used stays mapped until it exits, as with
  tcmalloc / jemalloc. MTL_JAX_MALLOC=default opts out; not glibc (macOS, musl): nothing to do.
- gc: each full collection walks every object the imports made (jax, TensorFlow, orbax: millions),
  and a training loop triggers collections all the time. `freeze_imports`, called once setup is
  done, moves them to the permanent generation so collections walk only what the run makes
  (another ~7 CPU-s per launch). Nothing is leaked: a frozen object that later becomes garbage is
  still freed by reference counting; only cycles among frozen objects are not collected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
TRIM_THRESHOLD = 1 << 30
MMAP_THRESHOLD = 64 << 20


@functools.cache  # once per process: later calls return the first answer
def tune_allocator() -> bool:
  """glibc keeps freed memory for the next step (see the module docstring); True when applied.
  MTL_JAX_MALLOC=default leaves glibc's defaults."""
  if os.environ.get("MTL_JAX_MALLOC", "").strip().lower() == "default":
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  except OSError:  # no loadable C library by that name: not glibc
    return False
  mallopt = getattr(libc, "mallopt", None)
  return bool(mallopt and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def freeze_imports() -> None:
  """Collect once, then keep every object alive now out of later collections (gc.freeze)."""
  gc.collect()
  gc.freeze()
