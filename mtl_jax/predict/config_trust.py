"""Refuse a MODEL_DIR whose config.gin imports modules outside this project.

Why: mtl-predict (and anything else that rebuilds a run from MODEL_DIR/config.gin) parses that file
into the process, and gin executes every `import` line in it. A shared or downloaded MODEL_DIR could
so run arbitrary code. The run's own config.gin only imports the project's modules (mtl_jax.*, the
task modules tasks.*), so anything else is refused in one line naming the import and its line, before
gin sees the file; `--trust_config` (trust=True) skips the check. The imports are found with gin's own
parser (no configurable is looked up, nothing is imported), following `include` lines.
"""

from __future__ import annotations

import pathlib

ALLOWED = ("mtl_jax", "tasks", "__gin__")  # the project's packages; __gin__: gin's dynamic registration


def allowed(module: str) -> bool:
  return any(module == root or module.startswith(root + ".") for root in ALLOWED)


def foreign_imports(config_path, _seen=None) -> list[tuple[str, int, str]]:
  """(file, line, module) of every import outside ALLOWED in the file and the files it includes."""
  from gin import config as gin_config, config_parser
  from mtl_jax import gin_check
  path = pathlib.Path(config_path)
  seen = _seen if _seen is not None else set()
  if path.resolve() in seen:
    return []
  seen.add(path.resolve())
  parser = config_parser.ConfigParser(path.read_text(errors="replace"), gin_config.ParserDelegate(skip_unknown=True))
  out = []
  for statement in parser:
    if isinstance(statement, config_parser.ImportStatement) and not allowed(statement.module):
      out.append((str(path), statement.location.line_num, statement.module))
    elif isinstance(statement, config_parser.IncludeStatement):
      included = gin_check.resolve(statement.filename, [str(path.parent)])
      if included is not None:
        out += foreign_imports(included, seen)
  return out


def check(config_path, trust: bool = False, flag: str = "--trust_config") -> None:
  """ValueError (one line) for the first foreign import, unless `trust`."""
  if trust:
    return
  found = foreign_imports(config_path)
  if found:
    file, line, module = found[0]
    raise ValueError(f"{file}:{line} imports {module!r}, which is not a module of this project "
                     f"({', '.join(r + '.*' for r in ALLOWED[:2])}); reading this config would run its code. "
                     f"If you trust this MODEL_DIR, pass {flag}")
