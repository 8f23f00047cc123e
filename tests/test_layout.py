"""The house's rooms (issue "One room per concern"): a short top level, no import circle, and a
WORKSPACE.md whose named paths exist (and whose package blocks cover every module)."""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "mtl_jax"
TOP_LEVEL_MAX = 8  # besides __init__ / __main__


def _module_name(path: pathlib.Path) -> str:
  rel = path.relative_to(ROOT).with_suffix("")
  parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
  return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
  """Every mtl_jax module this file imports, at module level or inside functions (a lazy import
  only hides a circle). `from a.b import c` is an edge to a.b.c when c is a module, else to a.b."""
  out = set()
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names if a.name in known)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")
        anchor = anchor[:len(anchor) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      for a in node.names:
        if f"{base}.{a.name}" in known:
          out.add(f"{base}.{a.name}")
        elif base in known:
          out.add(base)
  out.discard(name)
  return out


def import_graph() -> dict[str, set[str]]:
  mods = _modules()
  known = set(mods)
  return {name: _imports(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import circle as a list of modules (first == last), or None. Package __init__ files
  that import their own submodules are the registries' normal shape, so edges from a package
  to its own children are left out."""
  edges = {n: {m for m in targets if not m.startswith(n + ".")} for n, targets in graph.items()}
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(n):
    state[n] = 1
    stack.append(n)
    for m in sorted(edges.get(n, ())):
      if state.get(m) == 1:
        return stack[stack.index(m):] + [m]
      if m not in state:
        found = visit(m)
        if found:
          return found
    stack.pop()
    state[n] = 2
    return None

  for n in sorted(edges):
    if n not in state:
      found = visit(n)
      if found:
        return found
  return None


def test_top_level_is_short():
  top = sorted(p.name for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
  assert len(top) <= TOP_LEVEL_MAX, top


def test_no_import_circle():
  cycle = find_cycle(import_graph())
  assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_circle():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert find_cycle(graph) == ["a", "b", "c", "a"]
  assert find_cycle({"p": {"p.x"}, "p.x": {"p"}}) is None  # a package importing its own child


def test_mixing_and_its_schedule_do_not_import_each_other():
  graph = import_graph()
  assert "mtl_jax.input.mixing_schedule" not in graph["mtl_jax.input.mixing"]


def _workspace_paths() -> set[str]:
  """Paths named by the layout block: an entry is a token ending in '/' or '.py' at two spaces per
  depth below its folder; deeper-indented lines continue the description above them."""
  block = (ROOT / "WORKSPACE.md").read_text().split("```", 2)[1]
  paths, stack = set(), []
  for line in block.splitlines()[1:]:
    m = re.match(r"^( *)(\S+)", line)
    if not m or len(m.group(1)) % 2:
      continue
    depth = len(m.group(1)) // 2
    if depth > len(stack) or not re.fullmatch(r"[\w.-]+(/|\.py)", m.group(2)):
      continue
    parent = stack[depth - 1] if depth else ""
    stack[depth:] = [parent + m.group(2)]
    paths.add(stack[depth])
  return paths


def test_workspace_names_existing_paths_and_every_module():
  named = _workspace_paths()
  missing = sorted(p for p in named if not (ROOT / p).exists())
  assert not missing, f"WORKSPACE.md names paths that do not exist: {missing}"
  files = {str(p.relative_to(ROOT)) for p in PKG.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
  covered = {f for f in files if any(f == n or (n.endswith("/") and f.startswith(n)) for n in named)}
  unnamed = sorted(files - covered)
  assert not unnamed, f"modules WORKSPACE.md's layout does not name: {unnamed}"


def test_old_module_paths_are_the_new_modules():
  import importlib

  from mtl_jax import _moved
  for old, new in _moved.OLD_TO_NEW.items():
    assert (ROOT / (new.replace(".", "/") + ".py")).exists(), new
  import mtl_jax.param_groups as old  # what gin files in gin/optim/ and old config.gin files say
  from mtl_jax.step import param_groups as new
  assert old is new
  assert importlib.import_module("mtl_jax.trainer") is importlib.import_module("mtl_jax.run.trainer")


def test_old_cli_path_runs_the_new_module(monkeypatch, capsys):
  import runpy
  import sys

  import pytest
  monkeypatch.setattr(sys, "argv", ["data_stats", "--help"])
  with pytest.raises(SystemExit) as done:
    runpy.run_module("mtl_jax.data_stats", run_name="__main__")
  assert done.value.code == 0
  assert "usage" in capsys.readouterr().out.lower()


def test_gin_files_with_old_imports_parse():
  import gin
  gin.clear_config()
  try:
    gin.parse_config_file(str(ROOT / "gin/optim/layer_decay.gin"))  # says `import mtl_jax.param_groups`
    from mtl_jax.step import param_groups
    assert gin.query_parameter("param_groups.layer_decay") == 0.8
    del param_groups
  finally:
    gin.clear_config()


def test_the_tool_list(capsys):
  from mtl_jax import __main__ as face
  assert face.main(["--help"]) == 0
  out = capsys.readouterr().out
  for tool in ("mtl-train", "mtl-compare", "mtl-transfer", "mtl-probe", "mtl-taskemb", "mtl-merge", "mtl-predict",
               "mtl-encode", "mtl-export"):
    assert tool in out
  import importlib.util
  for _, module, _ in face.TOOLS:
    assert importlib.util.find_spec(module) is not None, module


def test_the_train_step_and_the_gpu_benchmarks_import_without_tensorflow():
  """The accelerator's image has JAX but no TensorFlow (benchmarks/README.md, GPU): the step, the model
  and benchmarks/gpu.sh's modules must not load it (a blocked import fails if anything tries)."""
  import subprocess
  import sys
  root = pathlib.Path(__file__).resolve().parents[1]
  code = ("import sys; sys.modules['tensorflow'] = None; sys.path.insert(0, 'benchmarks')\n"
          "import framework_overhead, memory, gpu_overhead\n"
          "from mtl_jax.step.steps import Steps\nfrom mtl_jax.input import packing\nprint('ok')")
  done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
