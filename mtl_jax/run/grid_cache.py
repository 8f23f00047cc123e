"""Where the caches shared by the cells of a grid live: compiled XLA programs and tokenized examples.

Why: every grid cell is its own `mtl-train` process (compare/runner.py), so without a shared cache each
cell tokenizes the same tasks and compiles the same programs again. mtl-compare / mtl-transfer point
their cells at `EXP_DIR/.cache` through the MTL_JAX_GRID_CACHE environment variable (inherited by the
cell processes); a single run opts in with `--gin.grid_cache.directory=~/.cache/mtl_jax/grid` (or
the variable). Off when neither is set. Below the root: `xla/` (run/compile_cache.py) and
`examples/` (input/example_cache.py).

A cache directory that cannot be created or written is only a lost speed-up: one warning line (once per
directory) and the run goes on uncached.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import gin

ENV = "MTL_JAX_GRID_CACHE"
GRID_DIR = ".cache"  # under an experiment directory (mtl-compare / mtl-transfer)
_WARNED: set = set()


@gin.configurable(module="grid_cache")
def directory(path: str | None = None) -> pathlib.Path | None:
  """The cache root: gin `grid_cache.directory.path`, else $MTL_JAX_GRID_CACHE, else None (no caching)."""
  chosen = path if path is not None else os.environ.get(ENV)
  if chosen is None or str(chosen) == "":
    return None
  return pathlib.Path(os.path.expanduser(str(chosen))).absolute()


def usable(sub: str) -> pathlib.Path | None:
  """`<root>/<sub>` created and writable, or None: not configured, or not writable (warned once)."""
  root = directory()
  if root is None:
    return None
  path = root / sub
  try:
    path.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=path, prefix=".probe.")  # os.access says yes to root on a read-only mount
    os.close(fd)
    os.unlink(probe)
  except OSError as e:
    if str(path) not in _WARNED:
      _WARNED.add(str(path))
      print(f"mtl_jax: WARNING: cache directory {str(path)!r} is not writable ({e.strerror or e}); running "
            f"without it (set {ENV} or --gin.grid_cache.directory to a writable folder)", flush=True)
    return None
  return path
