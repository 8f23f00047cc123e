"""`--gin.KEY=VALUE` command-line overrides -> gin binding strings (shared by the binaries).

Values that are not Python/gin literals are taken as strings, so
`--gin.MODEL_DIR=/tmp/run` needs no inner quotes (t5x users' most common slip).
"""

from __future__ import annotations

import ast
from typing import Callable, Sequence


def gin_value(value: str) -> str:
  """Keeps literals and @/% references; quotes anything else as a string."""
  v = value.strip()
  if v.startswith(("@", "%")):
    return v
  try:
    ast.literal_eval(v)
    return v
  except (ValueError, SyntaxError):
    return repr(value)


def bindings(rest: Sequence[str], error: Callable[[str], None],
             example: str = "--gin.KEY=VALUE") -> list[str]:
  """Turns leftover argv items into gin bindings; anything else goes to `error`."""
  out = []
  for item in rest:
    if not item.startswith("--gin.") or "=" not in item:
      error(f"unrecognised argument {item!r}; bindings look like {example}")
    key, value = item[len("--gin."):].split("=", 1)
    out.append(f"{key} = {gin_value(value)}")
  return out
