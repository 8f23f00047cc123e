"""Command-line typos caught before the heavy imports, each as one line with a "did you mean".

Why textual: a misspelt `--gin_file` or macro (`--gin.TRAIN_STEP=40`) should fail in about a
second, but gin can only parse a file after importing what it imports (seqio, TensorFlow, JAX:
~10 s). So the gin files and their `include`s are read as text here: a file that is not found, or
a macro bound on the command line that no loaded file references with `%NAME` (and that base.gin
does not declare), or a `module.function.param` binding whose configurable in this project (read
with ast) has no such parameter, is an error before anything is imported or written. Gin's own
errors for what only the imports tell (an unknown configurable, a parameter of a configurable
outside mtl_jax/ and tasks/) get their suggestion from `explain()`.
"""

from __future__ import annotations

import difflib
import os
import pathlib
import re
from typing import Iterable, Sequence

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
BASE_GIN = REPO_ROOT / "gin" / "base.gin"
_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]", re.M)
_MACRO_REF = re.compile(r"%([A-Za-z_]\w*)(?![\w.])")
_MACRO_DEF = re.compile(r"^([A-Za-z_]\w*)\s*=", re.M)
_BARE_NAME = re.compile(r"^[A-Za-z_]\w*$")
_NO_PARAM = re.compile(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'")
_NO_CONFIGURABLE = re.compile(r"No configurable matching (?:reference )?'@?([^'(]+)(?:\(\))?'")


def search_roots(search_paths: Sequence[str] = ()) -> list[pathlib.Path]:
  """Where the train binary looks for gin files, in its order (train.parse_gin)."""
  return [pathlib.Path(p) for p in (*search_paths, os.getcwd(), str(REPO_ROOT))]


def resolve(path: str, search_paths: Sequence[str] = ()) -> pathlib.Path | None:
  candidate = pathlib.Path(os.path.expanduser(path))
  if candidate.is_absolute():
    return candidate if candidate.is_file() else None
  for root in search_roots(search_paths):
    if (root / candidate).is_file():
      return root / candidate
  return None


def close_match(word: str, choices: Iterable[str]) -> str | None:
  found = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
  return found[0] if found else None


def _gin_files_near(path: str, search_paths: Sequence[str]) -> list[str]:
  """Gin files, spelt as the user would (relative to a search root), in the typed file's folder
  (or, when that folder does not exist either, anywhere under the roots' gin/ folders)."""
  typed = pathlib.Path(path)
  out = []
  for root in search_roots(search_paths):
    folder = root / typed.parent
    if folder.is_dir():
      out += [str(typed.parent / p.name) for p in folder.glob("*.gin")]
  if not out:
    for root in search_roots(search_paths):
      if (root / "gin").is_dir():
        out += [str(p.relative_to(root)) for p in (root / "gin").rglob("*.gin")]
  return out


def missing_file_message(path: str, search_paths: Sequence[str] = (), what: str = "gin file") -> str:
  roots = list(dict.fromkeys(str(r) for r in search_roots(search_paths)))
  guess = close_match(path, _gin_files_near(path, search_paths))
  hint = f"; did you mean {guess}?" if guess else "; check the path"
  return f"{what} {path!r} not found (looked in {', '.join(roots)}){hint}"


def loaded_texts(gin_files: Sequence[str], search_paths: Sequence[str] = ()) -> list[str]:
  """The text of every gin file and everything it includes; ValueError for the first missing one."""
  texts, todo, seen = [], list(gin_files), set()
  while todo:
    name = todo.pop(0)
    path = resolve(name, search_paths)
    if path is None:
      raise ValueError(missing_file_message(name, search_paths))
    if path.resolve() in seen:
      continue
    seen.add(path.resolve())
    text = path.read_text(errors="replace")
    texts.append(text)
    todo += _INCLUDE.findall(text)
  return texts


def _without_comments(text: str) -> str:
  return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def known_macros(texts: Sequence[str], bindings: Sequence[str] = ()) -> set[str]:
  """Macros some loaded file (or binding) uses with %NAME, plus those base.gin declares."""
  known = set()
  for text in [*texts, *bindings]:
    known |= set(_MACRO_REF.findall(_without_comments(text)))
  if BASE_GIN.is_file():
    known |= set(_MACRO_DEF.findall(_without_comments(BASE_GIN.read_text())))
  return known


def unknown_macro_message(bindings: Sequence[str], texts: Sequence[str]) -> str | None:
  """The first `NAME = value` binding whose NAME no loaded file uses, with a suggestion."""
  known = known_macros(texts, [b.split("=", 1)[1] for b in bindings if "=" in b])
  defined = set()
  for text in texts:
    defined |= set(_MACRO_DEF.findall(_without_comments(text)))
  for binding in bindings:
    name = binding.split("=", 1)[0].strip()
    if _BARE_NAME.match(name) and name not in known:
      guess = close_match(name, known | defined)
      hint = f"did you mean --gin.{guess}?" if guess else f"macros used: {', '.join(sorted(known)) or 'none'}"
      return f"unknown macro {name} (--gin.{name}=...): no loaded gin file uses %{name}; {hint}"
  return None


def _configurable_signatures(module: str, function: str) -> list[tuple[list[str], bool]]:
  """(parameter names, takes **kwargs) of each gin-configurable `def function` / class in a module of this
  project whose base name is `module` (gin matches configurables by module base name), read with ast."""
  import ast
  out = []
  for root in (REPO_ROOT / "mtl_jax", REPO_ROOT / "tasks"):
    for path in sorted(root.rglob(f"{module}.py")):
      try:
        tree = ast.parse(path.read_text())
      except (OSError, SyntaxError):
        continue
      for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name != function:
          continue
        if not any("configurable" in ast.unparse(d) for d in node.decorator_list):
          continue
        if isinstance(node, ast.ClassDef):
          if any(ast.unparse(base) != "object" for base in node.bases):  # inherited fields: gin decides
            out.append(([], True))
            continue
          init = [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"]
          fields = [t.target.id for t in node.body if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)]
          args = init[0].args if init else None
          names = fields + ([a.arg for a in args.args[1:] + args.kwonlyargs] if args else [])
          out.append((names, bool(args and args.kwarg)))
        else:
          out.append(([a.arg for a in node.args.args + node.args.kwonlyargs], node.args.kwarg is not None))
  return out


def unknown_parameter_message(bindings: Sequence[str]) -> str | None:
  """The first `[scope/]module.function.param = value` binding whose param the configurable (found by ast,
  no import) does not take, with a suggestion; None when unsure (gin checks again after the imports)."""
  for binding in bindings:
    key = binding.split("=", 1)[0].strip().rsplit("/", 1)[-1]
    parts = key.split(".")
    if len(parts) != 3 or not all(_BARE_NAME.match(p) for p in parts):
      continue
    module, function, param = parts
    signatures = _configurable_signatures(module, function)
    if not signatures or any(kwargs or param in names for names, kwargs in signatures):
      continue
    names = signatures[0][0]
    guess = close_match(param, names)
    hint = f"did you mean {module}.{function}.{guess}?" if guess else f"its parameters: {', '.join(names)}"
    return f"{module}.{function} has no parameter {param!r}; {hint}"
  return None


def check(gin_files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str] = ()) -> None:
  """ValueError (one line) for a missing gin file, an unknown command-line macro or parameter."""
  texts = loaded_texts(gin_files, search_paths)
  message = unknown_macro_message(bindings, texts) or unknown_parameter_message(bindings)
  if message:
    raise ValueError(message)


def explain(error: BaseException) -> str | None:
  """Gin's unknown-parameter / unknown-configurable error with a "did you mean", else None.

  Call after gin parsed (the configurables are registered then)."""
  from gin import config as gin_config
  text = str(error)
  if m := _NO_PARAM.search(text):
    selector, name = m.groups()
    try:
      import inspect
      configurable = gin_config._REGISTRY.get_match(selector)  # gin has no public lookup
      params = [p for p in inspect.signature(configurable.wrapped).parameters if p not in (configurable.denylist or ())]
    except Exception:  # pylint: disable=broad-except
      return None
    guess = close_match(name, params)
    hint = f"did you mean {selector}.{guess}?" if guess else f"its parameters: {', '.join(params)}"
    return f"{selector} has no parameter {name!r}; {hint}"
  if m := _NO_CONFIGURABLE.search(text):
    selector = m.group(1).split("/")[-1]
    names = []
    for key in gin_config._REGISTRY._selector_map:  # pylint: disable=protected-access
      names += [key, key.split(".")[-1], ".".join(key.split(".")[-2:])]
    guess = close_match(selector, names)
    return f"no configurable {selector!r}" + (f"; did you mean {guess}?" if guess else
                                             "; import the module that defines it in your gin file")
  return None
