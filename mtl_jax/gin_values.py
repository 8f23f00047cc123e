"""Bad command-line values of the run's counts, refused before the heavy imports (issue #26 item 7).

Why: `--gin.TRAIN_STEPS=0` used to be refused by trainer.train after TensorFlow, seqio, JAX and the
task modules were imported and the gin files parsed (~9.5 CPU-s); the values are plain literals on
the command line, so they can be read here in milliseconds. Only literal values of the command-line
bindings are checked (they win over the gin files); anything else (a value from a gin file, a macro
reference) is left to the trainer, which checks the same things with the same messages
(run/trainer.py `_positive_int`). Nothing heavy is imported.
"""

from __future__ import annotations

import ast
from typing import Sequence

POSITIVE_MACROS = ("TRAIN_STEPS", "BATCH_SIZE")
POSITIVE_TRAIN_PARAMS = ("eval_period", "checkpoint_period", "keep_checkpoints", "log_period", "eval_batch_size")


def _literal(text: str):
  try:
    return True, ast.literal_eval(text.strip())
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    return False, None


def _name_of(key: str) -> str | None:
  """The trainer's name for a checked binding key: TRAIN_STEPS / BATCH_SIZE / train.<param>, else None."""
  if key in POSITIVE_MACROS:
    return key
  parts = key.split("/")[-1].split(".")
  if len(parts) >= 2 and parts[-2] == "train" and parts[-1] in POSITIVE_TRAIN_PARAMS and (
      len(parts) == 2 or parts[-3] == "trainer"):
    return f"train.{parts[-1]}"
  return None


def check(bindings: Sequence[str]) -> None:
  """ValueError (the trainer's one line) for a command-line count that is not a positive int."""
  last = {}
  for binding in bindings:
    key, sep, value = binding.partition("=")
    name = _name_of(key.strip()) if sep else None
    if name is not None:
      last[name] = value
  for name, text in last.items():
    ok, value = _literal(text)
    if not ok or (name == "train.eval_batch_size" and value is None):
      continue
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f"{name} must be a positive int, got {value!r}; set --gin.{name}=<int>")
