"""mkdocs hook: the site serves files that live outside docs/ without copying them into the repo twice.

- WORKSPACE.md (the map of the code) becomes the page design/workspace.md;
- benchmarks/results/ (the raw files behind every result table) is served under benchmarks/results/,
  so results pages link their raw reports, CSVs and figures and `mkdocs build --strict` checks the links.
  A raw report whose own figures were not kept in the repository (its relative links point at nothing)
  is not served: the results page names its path instead of linking a page with broken images.
"""

from __future__ import annotations

import pathlib
import re

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
RAW = ("benchmarks/results",)


def on_files(files, config):
  files.append(File.generated(config, "design/workspace.md", abs_src_path=str(ROOT / "WORKSPACE.md")))
  for top in RAW:
    for path in sorted((ROOT / top).rglob("*")):
      if path.is_file() and not path.name.startswith(".") and not _dangling(path):
        files.append(File.generated(config, str(path.relative_to(ROOT)), abs_src_path=str(path)))
  return files


def _dangling(path: pathlib.Path) -> bool:
  """A markdown file with a relative link to a file that is not there."""
  if path.suffix != ".md":
    return False
  for target in re.findall(r"\]\(([^)\s#]+)", path.read_text(errors="replace")):
    if "://" not in target and not (path.parent / target).exists():
      return True
  return False
