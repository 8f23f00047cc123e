"""The experiment grid: strategies x mixtures x seeds (x gin axes) plus single-task baselines.

Why a spec object: every cell must be run by the *same* train binary with the same
budget, differing only in what the grid varies, so the cells are derived here from one
declaration (a gin file in gin/experiments/, or command-line flags) and nowhere else.

A gin experiment file binds `experiment.*`:

  from mtl_jax.compare import grid
  experiment.name = 'demo'
  experiment.gin_files = ['gin/runs/quickstart.gin', 'gin/models/tiny.gin']  # every cell
  experiment.strategies = ['hard', 'sluice']        # -> gin/sharing/<name>.gin
  experiment.mixtures = ['quickstart']
  experiment.seeds = [0, 1, 2]                      # -> --gin.trainer.train.seed=S
  experiment.bindings = {'TRAIN_STEPS': 300}        # -> --gin.KEY=VALUE on every cell
  experiment.axes = {'model': ['gin/models/tiny.gin', 'gin/models/small.gin'],
                     'optim.make_optimizer.learning_rate': [1e-3, 3e-3],
                     'weighting': ['equal', 'uw', 'pcgrad']}  # -> gin/weighting/<name>.gin

An axis whose values are all '*.gin' paths adds that gin file; any other axis is a gin
binding KEY=value. A single-task baseline of task X is the same binary with
MIXTURE_OR_TASK_NAME=X and `baseline_strategy` sharing, for every seed and every value
of every axis not listed in `mtl_only_axes` (e.g. a mixing-rate axis). Baselines are
deduplicated across mixtures sharing a task.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
import re
import sys
from typing import Any, Mapping, Sequence

import gin

from mtl_jax import gin_check
from mtl_jax.compare import declared
from mtl_jax.compare import merge_check
from mtl_jax.compare import seeds_check
from mtl_jax.compare import tune as tune_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SINGLE = "single"  # the strategy label of single-task baseline cells
WEIGHTING_GIN = "gin/weighting/{}.gin"  # the 'weighting' axis may name methods
_SLUG = re.compile(r"[^A-Za-z0-9._=+-]+")


def slug(text: str) -> str:
  """A file-name-safe form of a label (directory names, plot names)."""
  return _SLUG.sub("_", str(text)).strip("_") or "_"


def _is_gin_path(value) -> bool:
  return isinstance(value, str) and value.endswith(".gin")


def binding_arg(key: str, value) -> str:
  """`--gin.KEY=VALUE` for the train binary: strings as given (it quotes non-literals)."""
  return f"--gin.{key}={value if isinstance(value, str) else repr(value)}"


def resolve_gin_path(path: str) -> pathlib.Path | None:
  """The file as the binary will find it (cwd first, then the repo root), or None."""
  for base in (pathlib.Path.cwd(), REPO_ROOT):
    candidate = base / path
    if candidate.is_file():
      return candidate
  return None


@dataclasses.dataclass(frozen=True)
class Cell:
  """One run of the train binary: its own MODEL_DIR under EXP_DIR/runs/<cell_id>."""
  cell_id: str
  kind: str                  # 'mtl' or 'single'
  strategy: str              # sharing strategy, or SINGLE for baselines
  mixture: str               # MIXTURE_OR_TASK_NAME (the task itself for baselines)
  seed: int
  axes: tuple                # ((axis name, value label), ...) in spec order
  gin_files: tuple           # every --gin_file, in order
  bindings: tuple            # ((key, value), ...) every --gin.KEY=VALUE except MODEL_DIR

  @property
  def axes_dict(self) -> dict:
    return dict(self.axes)

  def train_steps(self) -> int | None:
    """TRAIN_STEPS when the grid binds it (else the binary's config.gin says)."""
    value = dict(self.bindings).get("TRAIN_STEPS")
    return int(value) if value is not None else None

  def argv(self, binary: Sequence[str], model_dir: os.PathLike | str) -> list[str]:
    return [*binary, *(f"--gin_file={f}" for f in self.gin_files),
            binding_arg("MODEL_DIR", str(model_dir)), *(binding_arg(k, v) for k, v in self.bindings)]


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A declared grid; `cells()` expands it. See the module docstring for the fields."""
  name: str = "experiment"
  gin_files: tuple = ()
  strategies: tuple = ("hard",)
  mixtures: tuple = ()
  seeds: tuple = (0,)
  bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  axes: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
  baselines: bool = True
  baseline_strategy: str = "hard"
  mtl_only_axes: tuple = ()
  tasks: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
  seed_binding: str = "trainer.train.seed"
  sharing_gin: str = "gin/sharing/{}.gin"
  exp_dir: str | None = None
  parallel: int = 1
  binary: tuple = ()
  env: Mapping[str, str] = dataclasses.field(default_factory=dict)
  description: str = ""
  tune: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)  # compare/tune.py
  tune_arms: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # per-arm spaces (tune.py)
  seeds_per_step: int = 1  # K seeds of a cell per trainer, one vmapped step (compare/seed_groups.py)
  merge: tuple = ()  # merge methods: arms merged from the single-task cells (compare/merge_arms.py)
  merge_grid: Mapping[str, Mapping[str, Sequence]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if isinstance(self.merge, str):  # experiment.merge = 'ties'
      object.__setattr__(self, "merge", (self.merge,))
    for field in ("gin_files", "strategies", "mixtures", "seeds", "mtl_only_axes", "binary", "merge"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    object.__setattr__(self, "bindings", dict(self.bindings))
    axes = {k: list(v) for k, v in dict(self.axes).items()}
    if "weighting" in axes:  # method names -> gin/weighting/<name>.gin (labelled by the name)
      axes["weighting"] = [v if _is_gin_path(v) else WEIGHTING_GIN.format(v) for v in axes["weighting"]]
    object.__setattr__(self, "axes", axes)
    object.__setattr__(self, "tasks", {k: list(v) for k, v in dict(self.tasks).items()})
    object.__setattr__(self, "tune", {k: list(v) if isinstance(v, (list, tuple)) else v
                                      for k, v in dict(self.tune).items()})

  def validate(self) -> None:
    """One clear error for a grid that cannot run (before any cell is launched)."""
    if not self.gin_files:
      raise ValueError("experiment.gin_files is empty: name the gin file(s) every cell starts from, "
                       "e.g. gin/runs/quickstart.gin")
    if not self.mixtures:
      raise ValueError("experiment.mixtures is empty: name at least one mixture, e.g. quickstart")
    if not self.strategies and not self.baselines:
      raise ValueError("no strategies and no baselines: nothing to run")
    if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
      raise ValueError(f"experiment.seeds must be a non-empty list of ints >= 0, got {list(self.seeds)}")
    if len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f"experiment.seeds has duplicates: {list(self.seeds)}")
    seeds_check.check(self.seeds_per_step, self.seed_binding)
    if SINGLE in self.strategies:
      raise ValueError(f"{SINGLE!r} is the baseline label, not a strategy; use experiment.baselines = True")
    if self.parallel < 1:
      raise ValueError(f"parallel must be >= 1, got {self.parallel}")
    for key in ("MODEL_DIR", "MIXTURE_OR_TASK_NAME", self.seed_binding):
      if key in self.bindings or key in self.axes:
        raise ValueError(f"{key} is set by the grid itself; remove it from experiment.bindings/axes")
    for name, values in self.axes.items():
      if not values:
        raise ValueError(f"axis {name!r} has no values")
      if any(_is_gin_path(v) for v in values) and not all(_is_gin_path(v) for v in values):
        raise ValueError(f"axis {name!r} mixes gin files and values: {values}")
    for name in self.mtl_only_axes:
      if name not in self.axes:
        raise ValueError(f"mtl_only_axes names {name!r}, which is not an axis ({sorted(self.axes)})")
    files = list(self.gin_files) + [self.strategy_gin(s) for s in self.strategies]
    if self.baselines:
      files.append(self.strategy_gin(self.baseline_strategy))
    files += [v for values in self.axes.values() for v in values if _is_gin_path(v)]
    check_gin_files(files)
    check_macros(self.gin_files, [*self.bindings, *(n for n, vs in self.axes.items() if not _is_gin_path(vs[0]))])
    tune_lib.validate(self.tune, self.axes, self.bindings, self.gin_files)
    merge_check.validate(self)

  @property
  def searched_axes(self) -> dict:
    """The axes plus the tune keys: both expand into cells; tune keys collapse again at the report."""
    return {**self.axes, **self.tune}

  def strategy_gin(self, strategy: str) -> str:
    return strategy if _is_gin_path(strategy) else self.sharing_gin.format(strategy)

  def command(self) -> tuple:
    return self.binary or (sys.executable, "-m", "mtl_jax.train", "--no_progress")

  def axis_combinations(self, names: Sequence[str] | None = None) -> list[tuple]:
    """[((axis, label), ...), ...] over the named axes (all by default)."""
    names = list(self.searched_axes) if names is None else list(names)
    combos = itertools.product(*(self.searched_axes[n] for n in names))
    return [tuple((n, axis_label(v)) for n, v in zip(names, combo)) for combo in combos]

  def _axis_contribution(self, axes: tuple) -> tuple[list, list]:
    files, bindings = [], []
    for name, label in axes:
      value = next(v for v in self.searched_axes[name] if axis_label(v) == label)
      (files.append(value) if _is_gin_path(value) else bindings.append((name, value)))
    return files, bindings

  def make_cell(self, kind: str, strategy: str, mixture: str, seed: int, axes: tuple) -> Cell:
    files, axis_bindings = self._axis_contribution(axes)
    sharing = self.strategy_gin(self.baseline_strategy if kind == "single" else strategy)
    bindings = [("MIXTURE_OR_TASK_NAME", task_binding(mixture, self.gin_files)), (self.seed_binding, seed),
                *self.bindings.items(), *axis_bindings]
    label = pathlib.Path(strategy).stem if _is_gin_path(strategy) else strategy
    cell_id = "__".join([slug(label), slug(mixture), *(slug(f"{n.split('.')[-1]}={v}") for n, v in axes),
                         f"seed{seed}"])
    return Cell(cell_id=cell_id, kind=kind, strategy=label, mixture=mixture, seed=int(seed), axes=axes,
                gin_files=(*self.gin_files, sharing, *files), bindings=tuple(bindings))

  def cells(self, tasks_of=None) -> list[Cell]:
    """Every cell, seed-major (all seed-0 cells first, so a partial sweep is already complete
    for one seed), then axes, mixture, strategies, then the mixture's new baselines."""
    self.validate()
    tasks_of = tasks_of or self.tasks_of
    out, seen = [], set()
    base_axes = [n for n in self.searched_axes if n not in self.mtl_only_axes]
    for seed in self.seeds:
      for axes in self.axis_combinations():
        for mixture in self.mixtures:
          for strategy in self.strategies:
            out.append(self.make_cell("mtl", strategy, mixture, seed, axes))
          if not self.baselines:
            continue
          baxes = tuple((n, v) for n, v in axes if n in base_axes)
          for task in tasks_of(mixture):
            cell = self.make_cell("single", SINGLE, task, seed, baxes)
            if cell.cell_id not in seen:
              seen.add(cell.cell_id)
              out.append(cell)
    out = tune_lib.expand_arms(self, out, self.tune_arms)  # per-arm search spaces (compare/tune.py)
    ids = [c.cell_id for c in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
      raise ValueError(f"two cells share the directory name {dupes[0]!r}; give axis values distinct labels")
    return out

  def tasks_of(self, mixture: str) -> list[str]:
    """The tasks of a mixture (for its baselines), in the binary's task_id order."""
    if mixture in self.tasks:
      return sorted(self.tasks[mixture])
    return tasks_of_mixture(mixture, self.gin_files)

  def to_json(self) -> dict:
    return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def axis_label(value) -> str:
  """A short label of an axis value: a gin file's stem, else str(value)."""
  return pathlib.Path(value).stem if _is_gin_path(value) else str(value)


def _jsonable(value):
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


_SYNTHETIC = re.compile(r"^synthetic_r(\d+)_t(\d+)$")


def tasks_of_mixture(mixture: str, gin_files: Sequence[str] = ()) -> list[str]:
  """Synthetic mixtures by name (no import); anything else from the seqio registry after
  importing the `tasks.*` modules the gin files import (found through their includes)."""
  m = _SYNTHETIC.match(mixture)
  if m:
    return sorted(f"{mixture}_task{t}" for t in range(int(m.group(2))))
  import importlib
  for module in task_modules(gin_files):
    importlib.import_module(module)
  import seqio
  if mixture not in seqio.MixtureRegistry.names() and mixture not in seqio.TaskRegistry.names():
    declared.register(gin_files, mixture)  # a mixture of your own files (tasks/from_files.py)
  try:
    provider = seqio.get_mixture_or_task(mixture)
  except (ValueError, KeyError) as e:
    raise ValueError(f"cannot find the tasks of mixture {mixture!r} ({str(e).splitlines()[0]}); "
                     "import its task module in a gin file or set experiment.tasks") from None
  if isinstance(provider, seqio.Mixture):
    return sorted(t.name for t in provider.tasks)
  return [provider.name]


_IMPORT = re.compile(r"^\s*import\s+(tasks(?:\.\w+)+)\s*$")
_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]")


def task_modules(gin_files: Sequence[str]) -> list[str]:
  """`import tasks.X` lines of the gin files and everything they include."""
  found, todo, visited = [], list(gin_files), set()
  while todo:
    path = resolve_gin_path(todo.pop(0))
    if path is None or path in visited:
      continue
    visited.add(path)
    for line in path.read_text().splitlines():
      if m := _IMPORT.match(line):
        found.append(m.group(1))
      elif m := _INCLUDE.match(line):
        todo.append(m.group(1))
  return list(dict.fromkeys(found))


def check_gin_files(paths: Sequence[str]) -> None:
  """One clear error (with a "did you mean") for the first gin file the binary would not find."""
  for path in paths:
    if resolve_gin_path(path) is None:
      raise ValueError(gin_check.missing_file_message(path))


def check_macros(gin_files: Sequence[str], keys: Sequence[str]) -> None:
  """One clear error for a macro every cell binds (`--binding=KEY=V`) that no gin file of the cells uses."""
  message = gin_check.unknown_macro_message([f"{k} = 0" for k in keys], gin_check.loaded_texts(gin_files))
  if message:
    raise ValueError(message)


def task_binding(name: str, gin_files: Sequence[str]) -> str:
  """MIXTURE_OR_TASK_NAME of a cell: the name, or the gin call that registers a task / mixture the gin
  files declare from your own files (mtl_jax/compare/declared.py)."""
  return declared.references(gin_files).get(name, name)


def spec_from_fields(cls, label: str, fields: Mapping[str, Any]):
  """`cls(**fields)` for a gin-bound spec dataclass, naming unknown `label.<field>` bindings."""
  known = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(fields) - set(known))
  if unknown:
    guess = gin_check.close_match(unknown[0], known)
    hint = f"did you mean {label}.{guess}?" if guess else f"known: {', '.join(known)}"
    raise ValueError(f"unknown {label} field(s) {', '.join(unknown)}; {hint}")
  return cls(**fields)


def load_spec(build, gin_files: Sequence[str] = (), bindings: Sequence[str] = (), **overrides):
  """Parses experiment gin files + bindings, calls the gin-configurable `build()`; flags override fields."""
  gin.clear_config()
  try:
    for path in (os.getcwd(), str(REPO_ROOT)):
      gin.add_config_file_search_path(path)
    gin.parse_config_files_and_bindings(list(gin_files), list(bindings), finalize_config=False)
    spec = build()
  finally:
    gin.clear_config()
  overrides = {k: v for k, v in overrides.items() if v is not None}
  return dataclasses.replace(spec, **overrides) if overrides else spec


@gin.configurable("experiment", module="mtl_jax.compare.grid")
def experiment(**fields) -> Experiment:
  """The gin-bound spec (every `experiment.<field>` binding) as an Experiment."""
  return spec_from_fields(Experiment, "experiment", fields)


def load(gin_files: Sequence[str] = (), bindings: Sequence[str] = (), **overrides) -> Experiment:
  """Parses experiment gin files + `experiment.KEY = VALUE` bindings; flags override fields."""
  return load_spec(experiment, gin_files, bindings, **overrides)
