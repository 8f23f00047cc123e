"""Tasks and mixtures declared in gin (tasks/from_files.py), as the gin reference that registers them.

Why: a grid cell picks its task or mixture with `--gin.MIXTURE_OR_TASK_NAME=...`. For a task read from
your own files, the plain name would replace the `@from_files.mixture()` binding that registers the file
tasks, and the cell would not find them. So a cell binds the declaring call instead
(`@reviews/from_files.task()`, `@from_files.mixture()`): it registers what it names and returns the
name, in the cell's process and in every later one that reads the cell's config.gin (resume, predict).
The names are read from the gin files' text (no imports); `register()` runs a declaration in this
process when the grid needs a declared mixture's tasks (its single-task baselines).
"""

from __future__ import annotations

import re
from typing import Sequence

from mtl_jax import gin_check

_NAME = re.compile(r"^\s*(?:([\w.]+)/)?((?:[\w.]+\.)?from_files)\.(task|mixture)\.name\s*=\s*['\"]([^'\"]+)['\"]",
                   re.M)


def references(gin_files: Sequence[str]) -> dict[str, str]:
  """{declared name: '@scope/from_files.task()' or '@from_files.mixture()'} of the gin files (and includes)."""
  out = {}
  try:
    texts = gin_check.loaded_texts(gin_files)
  except ValueError:  # a missing file: the grid's own check names it
    return out
  for text in texts:
    for scope, module, kind, name in _NAME.findall(text):
      out[name] = f"@{scope + '/' if scope else ''}{module}.{kind}()"
  return out


def register(gin_files: Sequence[str], name: str) -> bool:
  """Parses the gin files and runs the declaration of `name` (files read, seqio task/mixture registered).
  False when the gin files do not declare `name`."""
  reference = references(gin_files).get(name)
  if reference is None:
    return False
  import gin
  from mtl_jax import train
  scope, _, selector = reference[1:-2].rpartition("/")
  train.parse_gin(list(gin_files), [])
  try:
    with gin.config_scope(scope or None):
      gin.get_configurable(selector)()
  finally:
    gin.clear_config()
  return True
