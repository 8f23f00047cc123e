"""Orbax's routine warnings dropped: "Metadata file does not exist", short "Waiting for previous save".

Why: checkpoints_best/<step> (a copy of a saved step) has no _CHECKPOINT_METADATA, and orbax says so
on every mtl-predict / mtl-export as `WARNING:absl:Metadata file does not exist: ...`; the restore does
not need it, and a newcomer reads the line as a fault. A training run's last save waits for the one
before it, and orbax warns about any wait ("... took 2.5 seconds. If this number is high, consider
checkpointing less frequently"); a wait under WAIT_S is dropped, a longer one (worth acting on) shows.
Only these messages are filtered (absl's logger); every other warning still shows.
"""

from __future__ import annotations

import logging
import re

NOISE = ("Metadata file does not exist",)
WAIT = re.compile(r"Waiting for previous save to complete took ([\d.]+) seconds")
WAIT_S = 10.0


class _DropNoise(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if any(n in message for n in NOISE):
      return False
    wait = WAIT.search(message)
    return not (wait and float(wait.group(1)) < WAIT_S)


_FILTER = _DropNoise()


def install() -> None:
  """Idempotent: adds the filter to absl's Python logger (orbax logs through it)."""
  logger = logging.getLogger("absl")
  if _FILTER not in logger.filters:
    logger.addFilter(_FILTER)
