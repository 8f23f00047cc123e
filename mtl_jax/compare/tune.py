"""Tuned arms (#28 item 3): every setting of `experiment.tune` runs, the pick is made on validation.

Why: most gains of multi-task methods over plain scalarization vanish once the baseline is tuned
(Kurin et al. 2022; Xin et al. 2022), so every arm -- single-task baselines included -- gets the same
search space, e.g.

  experiment.tune = {'optim.make_optimizer.learning_rate': [3e-4, 1e-3, 3e-3]}

The grid expands tune keys like binding axes (one cell per setting x seed). Before aggregation,
select() keeps, per arm (strategy or single-task task, mixture, other axes), the setting with the
best VALIDATION mean over its finished seeds (ties: the first in the search space); the comparison
then uses only that setting's cells, with their test-split numbers where a cell carries them
(cell['test'], same shape as cell['tasks']), never the test numbers for the choice.
"""

from __future__ import annotations

import ast
import math
import pathlib
import statistics
from typing import Mapping, Sequence

from mtl_jax import gin_check

PACKAGE = pathlib.Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ validation of the spec

def _configurable_params(module: str, function: str) -> list[str] | None:
  """Parameter names of `def function` in a mtl_jax module whose base name is `module` (gin
  matches configurables by module base name), read with ast: no import of JAX/TF. None when
  no such function exists."""
  for path in sorted(PACKAGE.rglob(f"{module}.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == function:
        if isinstance(node, ast.ClassDef):  # a configurable class: its fields / __init__ arguments
          return [t.target.id for t in node.body if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)] \
              + [a.arg for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"
                 for a in f.args.args + f.args.kwonlyargs]
        return [a.arg for a in node.args.args + node.args.kwonlyargs]
  return None


def check_key(key: str, gin_files: Sequence[str]) -> None:
  """One-line ValueError for a tune key no cell could bind: an unknown macro (bare NAME) or an
  unknown `module.function.parameter`, with a "did you mean"."""
  parts = key.split(".")
  if len(parts) == 1:
    message = gin_check.unknown_macro_message([f"{key} = 0"], gin_check.loaded_texts(gin_files))
    if message:
      raise ValueError(f"experiment.tune: {message}")
    return
  if len(parts) < 3:
    raise ValueError(f"experiment.tune key {key!r} is neither a macro nor module.function.parameter; "
                     "write e.g. 'optim.make_optimizer.learning_rate'")
  module, function, param = parts[-3], parts[-2], parts[-1]
  params = _configurable_params(module, function)
  if params is None:
    raise ValueError(f"experiment.tune key {key!r}: no function {function!r} in a module named {module}.py "
                     "under mtl_jax/; check the spelling (gin matches configurables by module base name)")
  if param not in params:
    guess = gin_check.close_match(param, params)
    hint = f"did you mean {module}.{function}.{guess}?" if guess else f"its parameters: {', '.join(params)}"
    raise ValueError(f"experiment.tune key {key!r}: {module}.{function} has no parameter {param!r}; {hint}")


def validate(tune: Mapping[str, Sequence], axes: Mapping, bindings: Mapping, gin_files: Sequence[str]) -> None:
  """One clear error for a tune spec that cannot run (called by grid.Experiment.validate)."""
  for key, values in tune.items():
    if not isinstance(values, (list, tuple)) or not values:
      raise ValueError(f"experiment.tune[{key!r}] is an empty search space ({values!r}); give at least one "
                       "value, e.g. [3e-4, 1e-3, 3e-3]")
    if key in axes or key in bindings:
      raise ValueError(f"experiment.tune key {key!r} is also in experiment.{'axes' if key in axes else 'bindings'}; "
                       "keep it in one place")
    if any(isinstance(v, str) and v.endswith(".gin") for v in values):
      raise ValueError(f"experiment.tune[{key!r}] lists gin files; tune takes binding values, put gin files "
                       "in experiment.axes")
    if len(set(map(str, values))) != len(values):
      raise ValueError(f"experiment.tune[{key!r}] has duplicate values: {list(values)}")
    check_key(key, gin_files)


# ------------------------------------------------------------------ selection on validation

def _validation_score(cell: dict) -> float | None:
  """The number the pick maximises: a multi-task cell's average headline, a single-task cell's
  task headline (negated when lower is better). Both are validation numbers (results.json)."""
  if cell["kind"] == "single":
    score = cell["tasks"].get(cell["mixture"])
    if score is None:
      return None
    return -score["value"] if score["lower_is_better"] else score["value"]
  return cell.get("average")


def _reported(cell: dict) -> dict:
  """The cell as the comparison sees it: test-split scores where the cell has them."""
  test = cell.get("test")
  if not test:
    return {**cell, "split": "validation"}
  return {**cell, "tasks": test, "average": statistics.fmean(t["value"] for t in test.values()),
          "split": "test"}


def select(cells: Sequence[dict], tune_keys: Sequence[str]) -> tuple[list[dict], list[dict]]:
  """(cells for the comparison, picks). Without tune keys every cell is kept. With them, per arm
  the setting with the highest validation mean over its finished seeds is kept and the tune
  keys leave the cells' axes (so the arm is compared as one). Each pick: arm, space (per
  setting: validation mean and n), pick."""
  tune_keys = [k for k in tune_keys]
  if not tune_keys:
    return [_reported(c) for c in cells], []
  arms: dict = {}
  for c in cells:
    rest = tuple((k, v) for k, v in c["axes"].items() if k not in tune_keys)
    setting = tuple((k, c["axes"][k]) for k in tune_keys if k in c["axes"])
    arm = (c["kind"], c["strategy"], c["mixture"], rest)
    arms.setdefault(arm, {}).setdefault(setting, []).append(c)
  kept, picks = [], []
  for (kind, strategy, mixture, rest), settings in arms.items():
    space = []
    for setting, members in settings.items():
      scores = [s for s in (_validation_score(c) for c in members if c["status"] == "done")
                if s is not None and not math.isnan(s)]
      space.append({"setting": dict(setting), "validation_mean": statistics.fmean(scores) if scores else None,
                    "n": len(scores)})
    scored = [i for i, s in enumerate(space) if s["validation_mean"] is not None]
    best = max(scored, key=lambda i: (space[i]["validation_mean"], -i)) if scored else None
    picks.append({"kind": kind, "strategy": strategy, "mixture": mixture, "axes": dict(rest), "space": space,
                  "pick": None if best is None else space[best]["setting"]})
    if best is None:
      continue
    chosen = tuple(space[best]["setting"].items())
    for c in settings[chosen]:
      kept.append({**_reported(c), "axes": dict(rest), "tuned": dict(chosen)})
  return kept, picks


def markdown(picks: Sequence[dict], tune: Mapping[str, Sequence]) -> list[str]:
  """report.md's section: the search space and each arm's pick with its validation means."""
  if not picks:
    return []
  lines = ["## Tuned arms", "", "Search space (every arm, single-task baselines included): "
           + "; ".join(f"{k} in {list(v)}" for k, v in tune.items())
           + ". Pick: the highest validation mean over seeds (ties: first listed); the comparison above "
           "uses only the picked setting's cells (test-split numbers where the cells have them).", "",
           "| arm | mixture | validation mean per setting (n seeds) | pick |", "|---|---|---|---|"]
  fmt = lambda setting: ", ".join(f"{k.split('.')[-1]}={v}" for k, v in setting.items())
  for p in picks:
    arm = p["strategy"] + "".join(f", {k}={v}" for k, v in p["axes"].items())
    space = "; ".join(f"{fmt(s['setting'])}: " + ("–" if s["validation_mean"] is None else
                                                   f"{s['validation_mean']:.4f} ({s['n']})") for s in p["space"])
    lines.append(f"| {arm} | {p['mixture']} | {space} | {'–' if p['pick'] is None else fmt(p['pick'])} |")
  return lines
