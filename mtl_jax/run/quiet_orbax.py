"""Orbax's "Metadata file does not exist" warning dropped when a run's checkpoint is read back.

Why: checkpoints_best/<step> (a copy of a saved step) has no _CHECKPOINT_METADATA, and orbax says so
on every mtl-predict / mtl-export as `WARNING:absl:Metadata file does not exist: ...`; the restore does
not need it, and a newcomer reads the line as a fault. Only that message is filtered (absl's logger),
every other warning still shows.
"""

from __future__ import annotations

import logging

NOISE = ("Metadata file does not exist",)


class _DropNoise(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(n in message for n in NOISE)


_FILTER = _DropNoise()


def install() -> None:
  """Idempotent: adds the filter to absl's Python logger (orbax logs through it)."""
  logger = logging.getLogger("absl")
  if _FILTER not in logger.filters:
    logger.addFilter(_FILTER)
