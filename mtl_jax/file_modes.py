"""Written files get the usual permissions (0666 / 0777 minus the umask: 0644 / 0755 with umask 022).

Why: some writers create files private regardless of the umask (safetensors' save_file: 0600;
tempfile.mkdtemp: a 0700 directory), so an export directory assembled in a temporary sibling and
renamed into place would be unreadable to the collaborators it is meant for, unlike every other file
the project writes.
"""

from __future__ import annotations

import os
import pathlib


def umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def as_usual(root: os.PathLike | str) -> None:
  """chmod `root` (a directory) and everything under it to the umask's default modes."""
  mask = umask()
  root = pathlib.Path(root)
  for path in [root, *root.rglob("*")]:
    if path.is_symlink():
      continue
    path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
