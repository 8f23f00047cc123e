"""A persistent XLA compilation cache for mtl-predict, so the second prediction from a run starts fast.

Why: compiling the forward pass is a large share of predicting two lines; with jax's persistent cache
the next process reads the compiled program instead. The cache lives in the user's cache directory
($MTL_JAX_CACHE, else $XDG_CACHE_HOME/mtl_jax/xla, else ~/.cache/mtl_jax/xla), never in the MODEL_DIR
(which may be someone else's, read-only). An explicitly configured cache (JAX_COMPILATION_CACHE_DIR)
is respected; a cache that cannot be created is skipped silently (it is only a speed-up).
"""

from __future__ import annotations

import os
import pathlib


def directory() -> pathlib.Path:
  if os.environ.get("MTL_JAX_CACHE"):
    return pathlib.Path(os.environ["MTL_JAX_CACHE"]) / "xla"
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "mtl_jax" / "xla"


def enable() -> str | None:
  """Turns the cache on (unless already configured); returns its directory, or None."""
  import jax
  if jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir
  path = directory()
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError:
    return None
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the forward compiles in < 1 s
  return str(path)
