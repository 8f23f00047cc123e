"""Stop a grid whose first cells all fail with the same configuration error.

Why: a bad setting shared by every cell (an unknown mixture, a typo in a gin file) fails each cell in
seconds with the same one-line error (exit 2); running the remaining cells only repeats it, and
"rerun to resume" would repeat it again. The first `FIRST` launched cells decide (or all of them, when
fewer): all exited 2 with the same error once quoted names and numbers are blanked (cells differ in
their task and MODEL_DIR). After that no further cell is launched and `error()` is the CLI's one
error line (exit 2, no "rerun to resume"). It wraps the runner's launcher (mtl_jax/compare/runner.py
is unchanged): a cell it does not launch returns exit 2 with a "not run" line in its train.log.
"""

from __future__ import annotations

import pathlib
import re
import threading

FIRST = 3
CONFIG_ERROR_RC = 2  # the train binary's exit status for bad configuration
_VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


def normalise(error: str) -> str:
  return _VARIABLE.sub("_", error)


def last_error(log_path: pathlib.Path) -> str:
  """The log's last line that names an error (the binary's one-line error), else ''."""
  try:
    lines = pathlib.Path(log_path).read_text(errors="replace").splitlines()
  except OSError:
    return ""
  return next((line.strip() for line in reversed(lines) if "error" in line.lower()), "")


class Guard:
  """A launcher (argv, log_path, env) -> rc around another, that stops launching as described above."""

  def __init__(self, launcher, first: int = FIRST):
    self.launcher, self.first = launcher, first
    self.results: list[tuple[int, str]] = []   # (rc, error line) of the launched cells, in finishing order
    self.launched = self.not_run = 0
    self.stopped = False
    self._lock = threading.Lock()

  def __call__(self, argv, log_path, env) -> int:
    with self._lock:
      if self.stopped:
        self.not_run += 1
        with open(log_path, "a") as log:
          log.write("mtl-compare: not run: the first cells failed with the same configuration error\n")
        return CONFIG_ERROR_RC
      self.launched += 1
    rc = self.launcher(argv, log_path, env)
    with self._lock:
      self.results.append((rc, last_error(log_path) if rc else ""))
      decided = self.results[:self.first]
      if len(self.results) == self.first:
        self.stopped = (all(r == CONFIG_ERROR_RC for r, _ in decided)
                        and len({normalise(e) for _, e in decided}) == 1)
    return rc

  def error(self) -> str | None:
    """The CLI's error line when the grid stopped, or when every launched cell (fewer than FIRST) failed
    alike; else None."""
    alike = (0 < len(self.results) < self.first and self.not_run == 0
             and all(r == CONFIG_ERROR_RC for r, _ in self.results)
             and len({normalise(e) for _, e in self.results}) == 1)
    if not (self.stopped or alike):
      return None
    error = self.results[0][1].split("error: ", 1)[-1]
    return (f"{len(self.results)} cells failed with the same configuration error"
            + (f" and {self.not_run} were not run" if self.not_run else "")
            + f": {error} (fix it and run the command again; each cell's train.log has the details)")
