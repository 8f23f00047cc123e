"""Tuned arms (#28 item 3): every setting of `experiment.tune` runs, the pick is made on validation.

Why: most gains of multi-task methods over plain scalarization vanish once the baseline is tuned
(Kurin et al. 2022; Xin et al. 2022), so every arm -- single-task baselines included -- gets the same
search space, e.g.

  experiment.tune = {'optim.make_optimizer.learning_rate': [3e-4, 1e-3, 3e-3]}

Per-arm spaces (what differs between strategies / weighting methods: soft's tie weight, sluice /
cross-stitch init, adapters' size, LoRA rank, the static weights) are declared in gin and searched
only in the arms they belong to (`expand_arms`):

  experiment.tune_arms = {'soft': {'soft_sharing.weight': [1e-3, 1e-2, 1e-1]},
                          'weighting=static': {'weighting.static.weights': 'simplex'}}

An arm key is a strategy name ('soft'), 'single' (the single-task baselines) or an axis value
('weighting=static', the axis' short or full name). 'simplex' for `weighting.static.weights` is the
tuned static-weight scalarization, the default baseline of weighting comparisons (Kurin et al. 2022;
Xin et al. 2022): for T <= 3 tasks every point of the simplex grid with step 1/SIMPLEX_STEPS
(`simplex_grid`), beyond that the equal point plus a fixed random sample of the simplex
(`static_weight_space`).

The grid expands tune keys like binding axes (one cell per setting x seed). Before aggregation,
select() keeps, per arm (strategy or single-task task, mixture, other axes), the setting with the
best VALIDATION mean over its finished seeds (ties: the first in the search space); the comparison
then uses only that setting's cells, with their test-split numbers where a cell carries them
(cell['test'], same shape as cell['tasks']), never the test numbers for the choice.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import math
import pathlib
import re
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


def _named_configurable_params(name: str, module: str | None = None) -> list[str] | None:
  """Parameter names of the configurable gin knows as `name` (a def / class decorated with
  @gin.configurable("name"), or an undecorated-name @gin.configurable def name) in mtl_jax/, by ast."""
  for path in sorted(PACKAGE.rglob("*.py")):
    text = path.read_text()
    if name not in text or "gin.configurable" not in text:
      continue
    for node in ast.walk(ast.parse(text)):
      if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        continue
      for dec in node.decorator_list:
        call = dec if isinstance(dec, ast.Call) else None
        target = call.func if call else dec
        if not (isinstance(target, ast.Attribute) and target.attr == "configurable"):
          continue
        given = [a.value for a in (call.args if call else []) if isinstance(a, ast.Constant)]
        declared = {k.arg: k.value.value for k in (call.keywords if call else []) if isinstance(k.value, ast.Constant)}
        if (given[0] if given else node.name) == name and (module is None or str(declared.get("module", "")).split(".")[-1] == module):
          return _configurable_params(path.stem, node.name)
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
  if len(parts) == 2 and _named_configurable_params(parts[0]) is not None:  # @gin.configurable("name")
    params = _named_configurable_params(parts[0])
    if parts[1] not in params:
      guess = gin_check.close_match(parts[1], params)
      hint = f"did you mean {parts[0]}.{guess}?" if guess else f"its parameters: {', '.join(params)}"
      raise ValueError(f"experiment.tune key {key!r}: {parts[0]} has no parameter {parts[1]!r}; {hint}")
    return
  if len(parts) < 3:
    raise ValueError(f"experiment.tune key {key!r} is neither a macro nor module.function.parameter; "
                     "write e.g. 'optim.make_optimizer.learning_rate'")
  module, function, param = parts[-3], parts[-2], parts[-1]
  params = _configurable_params(module, function)
  if params is None:  # @gin.configurable(module="weighting") def static in weighting/static.py
    params = _named_configurable_params(function, module)
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
  intro = ""
  if tune:
    intro += ("Search space (every arm, single-task baselines included): "
              + "; ".join(f"{k} in {list(v)}" for k, v in tune.items()) + ". ")
  if any(set(s["setting"]) - set(tune) for p in picks for s in p["space"]):
    intro += ("Arms with their own space (experiment.tune_arms; static weights: the simplex grid) list it in "
              "their row. ")
  intro += ("Pick: the highest validation mean over seeds (ties: first listed); the comparison above uses only "
            "the picked setting's cells (test-split numbers where the cells have them).")
  lines = ["## Tuned arms", "", intro, "",
           "| arm | mixture | validation mean per setting (n seeds) | pick |", "|---|---|---|---|"]
  fmt = lambda setting: ", ".join(f"{k.split('.')[-1]}={v}" for k, v in setting.items())
  for p in picks:
    arm = p["strategy"] + "".join(f", {k}={v}" for k, v in p["axes"].items())
    space = "; ".join(f"{fmt(s['setting'])}: " + ("–" if s["validation_mean"] is None else
                                                   f"{s['validation_mean']:.4f} ({s['n']})") for s in p["space"])
    lines.append(f"| {arm} | {p['mixture']} | {space} | {'–' if p['pick'] is None else fmt(p['pick'])} |")
  return lines


# ------------------------------------------------------------------ per-arm spaces

SIMPLEX_STEPS = 4         # simplex grid step 1/4 for T <= 3 tasks: 5 points (T=2), 15 (T=3)
SIMPLEX_SAMPLE = 16       # T > 3: the equal point + 15 random simplex points (fixed seed)
STATIC_WEIGHTS = "weighting.static.weights"


def simplex_grid(num_tasks: int, steps: int = SIMPLEX_STEPS) -> list[tuple[float, ...]]:
  """Every weight vector with entries k_i / steps (k_i >= 0 integers summing to steps), in
  lexicographic order of k descending (the first is all weight on task 0). Stars and bars."""
  if not isinstance(num_tasks, int) or num_tasks < 1 or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"simplex_grid needs num_tasks >= 1 and steps >= 1, got {num_tasks}, {steps}")
  points = []
  for bars in itertools.combinations(range(steps + num_tasks - 1), num_tasks - 1):
    edges = (-1, *bars, steps + num_tasks - 1)
    points.append(tuple((edges[i + 1] - edges[i] - 1) / steps for i in range(num_tasks)))
  return sorted(points, reverse=True)


def static_weight_space(num_tasks: int) -> list[list[float]]:
  """The static weights searched by the tuned scalarization baseline: the simplex grid for T <= 3,
  else the equal point and SIMPLEX_SAMPLE - 1 Dirichlet(1) draws (seed 0, rounded to 3 decimals)."""
  if num_tasks <= 3:
    return [list(p) for p in simplex_grid(num_tasks)]
  import numpy as np
  draws = np.random.default_rng(0).dirichlet(np.ones(num_tasks), size=SIMPLEX_SAMPLE - 1)
  return [[round(1.0 / num_tasks, 3)] * num_tasks] + [[round(float(x), 3) for x in d] for d in draws]


def _arm_of(cell, arm: str) -> bool:
  """Whether `cell` (grid.Cell) belongs to `arm`: its strategy, 'single', or one of its axis values."""
  if arm in (cell.strategy, cell.kind):
    return True
  name, sep, label = arm.partition("=")
  return bool(sep) and any((n == name or n.split(".")[-1] == name) and v == label for n, v in cell.axes)


def validate_arms(spaces: Mapping[str, Mapping], experiment, cells: Sequence) -> None:
  """One line for an arm no cell belongs to, an empty space, a key also in experiment.tune / axes, or
  'simplex' on another key than weighting.static.weights."""
  known = {*experiment.strategies, "single"}
  for cell in cells:
    known |= {f"{n}={v}" for name, v in cell.axes for n in (name, name.split(".")[-1])}
  for arm, space in spaces.items():
    if arm not in known:
      guess = gin_check.close_match(arm, known)
      raise ValueError(f"experiment.tune_arms: no arm {arm!r} in this experiment"
                       + (f"; did you mean {guess!r}?" if guess else f"; its arms: {', '.join(sorted(known))}"))
    if not isinstance(space, Mapping) or not space:
      raise ValueError(f"experiment.tune_arms[{arm!r}] is an empty search space; give {{key: [values]}}")
    for key, values in space.items():
      if values == "simplex":
        if key != STATIC_WEIGHTS:
          raise ValueError(f"experiment.tune_arms[{arm!r}][{key!r}] = 'simplex' only applies to {STATIC_WEIGHTS}")
        continue
      validate({key: values}, experiment.axes, experiment.bindings, experiment.gin_files)
      if key in experiment.tune:
        raise ValueError(f"experiment.tune_arms[{arm!r}] key {key!r} is also in experiment.tune; keep it in one "
                         "place")


_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")  # as grid.slug (grid imports this module: no import back)


def _slug(text: str) -> str:
  return _UNSAFE.sub("_", str(text)).strip("_") or "_"


def expand_arms(experiment, cells: Sequence, spaces: Mapping[str, Mapping]) -> list:
  """The grid's cells with every arm's own space expanded: a cell of an arm with a space becomes one
  cell per setting (its keys bound and added to its axes, so select() picks among them)."""
  if not spaces:
    return list(cells)
  validate_arms(spaces, experiment, cells)
  out = []
  for cell in cells:
    space = {}
    for arm, arm_space in spaces.items():
      if _arm_of(cell, arm):
        space.update(arm_space)
    if not space:
      out.append(cell)
      continue
    values = {k: (static_weight_space(len(experiment.tasks_of(cell.mixture))) if v == "simplex" else list(v))
              for k, v in space.items()}
    for combo in itertools.product(*values.values()):
      pairs = tuple(zip(values, combo))
      labels = tuple((k, str(v)) for k, v in pairs)
      stem, seed = cell.cell_id.rsplit("__", 1)
      cell_id = "__".join([stem, *(_slug(f"{k.split('.')[-1]}={v}") for k, v in labels), seed])
      out.append(dataclasses.replace(cell, cell_id=cell_id, axes=cell.axes + labels, bindings=cell.bindings + pairs))
  return out


def arm_keys(spaces: Mapping[str, Mapping]) -> list[str]:
  """The per-arm tune keys, for select() beside experiment.tune's."""
  return sorted({k for space in spaces.values() for k in space})


def keys_of(cells: Sequence[dict], spec: Mapping) -> list[str]:
  """The tune keys of a collected grid: experiment.tune's, then the per-arm keys (axes of cells that
  the experiment's own axes do not declare: only expand_arms adds those)."""
  declared = set(spec.get("axes") or {}) | set(spec.get("tune") or {})
  arm = sorted({k for c in cells for k in c.get("axes", {}) if k not in declared})
  return list(spec.get("tune") or {}) + arm
