"""Writes docs/reference/gin.md: every gin configurable of mtl_jax and tasks, its parameters and
defaults, read from gin's registry (run: python docs/gen_gin_reference.py).

Why generated: the knobs change with the code; tests/test_docs.py fails when this page misses one.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import pkgutil
import sys

import gin

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reference" / "gin.md"
TASK_MODULES = ("tasks.from_files",)


def load_all() -> None:
  import mtl_jax
  for m in pkgutil.walk_packages(mtl_jax.__path__, "mtl_jax."):
    if not m.name.endswith("__main__") and not m.name.startswith("mtl_jax._"):
      importlib.import_module(m.name)
  for name in TASK_MODULES:
    importlib.import_module(name)


def configurables() -> list[tuple[str, str, list[tuple[str, str]], str]]:
  """(gin name users type, defining module, [(parameter, default)], first docstring line)."""
  from gin import config
  load_all()
  rows = []
  for selector, c in config._REGISTRY.items():
    home = getattr(c.wrapped, "__module__", "") or ""
    if c.module == "gin" or not home.startswith(("mtl_jax", "tasks")):
      continue
    fn = c.wrapped.__init__ if inspect.isclass(c.wrapped) else c.wrapped
    params = []
    for p in inspect.signature(fn).parameters.values():
      if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
        continue
      required = p.default is p.empty or p.default is gin.REQUIRED  # gin.REQUIRED: a sentinel object
      default = "required" if required else repr(p.default)
      params.append((p.name, default.replace("|", "\\|")))
    base = c.module.rsplit(".", 1)[-1]
    short = f"{base}.{c.name}" if base != c.name else c.name
    doc = (inspect.getdoc(c.wrapped) or "").split("\n", 1)[0].replace("|", "\\|")
    rows.append((short, home, params, doc))
    del selector
  return sorted(rows)


def render() -> str:
  parts = ["# Gin knobs", "",
           "Every gin configurable of `mtl_jax` and `tasks`, generated from gin's registry by "
           "`python docs/gen_gin_reference.py` (a test fails when a knob is missing). Bind one as "
           "`NAME.PARAMETER = VALUE` in a gin file or `--gin.NAME.PARAMETER=VALUE` on the command line; "
           "the run macros (`MODEL_DIR`, `MIXTURE_OR_TASK_NAME`, `TASK_FEATURE_LENGTHS`, `TRAIN_STEPS`, "
           "`BATCH_SIZE`) are set in `gin/base.gin`.", ""]
  for short, module, params, doc in configurables():
    parts += [f"## `{short}`", "", f"{doc} (`{module}`)" if doc else f"`{module}`", ""]
    if params:
      parts += ["| parameter | default |", "|---|---|"]
      parts += [f"| `{name}` | `{default}` |" for name, default in params]
      parts.append("")
  return "\n".join(parts)


if __name__ == "__main__":
  sys.path.insert(0, str(ROOT))
  OUT.write_text(render())
  print(f"wrote {OUT}")
