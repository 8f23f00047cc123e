"""A persistent XLA compilation cache shared by the cells of a grid (run/grid_cache.py: `<root>/xla`).

Why: the second cell of a grid compiles the very programs the first one did (same model, shapes and
mesh; seeds are traced values, not constants). jax's persistent cache reads them back instead. Measured
on XLA:CPU, jax 0.10, tiny quickstart cell (benchmarks/grid_throughput.py): compile time summed over a
cell 7.6 s -> 1.7 s, ~11 CPU-s less per cell.

Why `min_compile_time_secs` matters (and why an earlier try for mtl-predict found no gain): at 0 every
executable is written, including the dozens of tiny jitted ops (a jnp add, a cast) that compile in
~0.04 s, and serialising them costs more than compiling them; at jax's default of 1 s the forward of a
small model (~0.6 s) is never cached. 0.5 s keeps the train / init / eval programs and skips the ops.
A cache dir configured for jax already (JAX_COMPILATION_CACHE_DIR, as the test session does) is kept.

Relocatable on CPU: jax puts a directory derived from the cache's path into every program's compile options
(`jax_persistent_cache_enable_xla_caches`, for XLA:GPU's autotuning results), so the same program had
another key in a copied or re-mounted cache and missed (found 6 Dec 2026: an experiment's `.cache`
copied under another EXP_DIR recompiled every program). On the CPU backend that option is off, which
keeps the keys independent of where the cache lives; on GPU it stays on (its autotune cache pays there).

Cells running in parallel (mtl-compare --parallel): jax writes an entry in place (no rename), so a size
limit is set: with one, jax's LRU cache takes a file lock around every read and write (no torn reads)
and evicts the least recently used programs beyond it.
"""

from __future__ import annotations

import gin

from mtl_jax.run import grid_cache


@gin.configurable(module="compile_cache")
def settings(min_compile_time_secs: float = 0.5, min_entry_size_bytes: int = 0,
             max_size_bytes: int = 4 << 30) -> dict:
  """Programs that compile faster than `min_compile_time_secs` (or are smaller) are not written; beyond
  `max_size_bytes` the least recently used are evicted."""
  if not isinstance(min_compile_time_secs, (int, float)) or min_compile_time_secs < 0:
    raise ValueError(f"compile_cache.settings.min_compile_time_secs must be a number >= 0, got "
                     f"{min_compile_time_secs!r}")
  if not isinstance(min_entry_size_bytes, int) or min_entry_size_bytes < 0:
    raise ValueError(f"compile_cache.settings.min_entry_size_bytes must be an int >= 0, got {min_entry_size_bytes!r}")
  if not isinstance(max_size_bytes, int) or max_size_bytes < 1:
    raise ValueError(f"compile_cache.settings.max_size_bytes must be an int >= 1, got {max_size_bytes!r}")
  return {"min_compile_time_secs": float(min_compile_time_secs), "min_entry_size_bytes": min_entry_size_bytes,
          "max_size_bytes": max_size_bytes}


def enable() -> str | None:
  """Turns jax's persistent cache on under the grid cache root; returns the directory in use, or None."""
  import jax
  from jax.experimental.compilation_cache import compilation_cache

  if jax.config.jax_compilation_cache_dir:  # configured by the user or the environment: respected
    return jax.config.jax_compilation_cache_dir
  chosen = settings()
  path = grid_cache.usable("xla")
  if path is None:
    return None
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", chosen["min_compile_time_secs"])
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", chosen["min_entry_size_bytes"])
  jax.config.update("jax_compilation_cache_max_size", chosen["max_size_bytes"])  # LRU + file lock (module doc)
  if jax.default_backend() == "cpu" and hasattr(jax.config, "jax_persistent_cache_enable_xla_caches"):
    jax.config.update("jax_persistent_cache_enable_xla_caches", "none")  # keys not tied to the path (module doc)
  compilation_cache.reset_cache()  # an in-process caller may have compiled before: take the new directory
  return str(path)
