"""The transfer grid: sources x targets x data regimes x seeds, in two stages of mtl-train runs.

Stage 1 (intermediate training) runs once per source and seed; stage 2 fine-tunes each target
from that run's trunk (`init_from`), and the baseline (source 'none') trains the target from the
same starting point (scratch, or `pretrained.checkpoint`) without stage 1. Every cell is a plain
run of the train binary, so `mtl_jax.compare.runner` runs them (skip finished, resume the rest).
A gin experiment file binds `transfer.*`:

  from mtl_jax.transfer import grid
  transfer.name = 'transfer_tiny'
  transfer.gin_files = ['gin/runs/quickstart.gin', 'gin/models/tiny.gin']   # every cell
  transfer.sources = ['rotten_tomatoes', 'quickstart']     # tasks or mixtures (stage 1)
  transfer.targets = ['vader_tweets', 'bbc_topic']         # tasks (stage 2)
  transfer.pairs = {}                                      # optional {target: [sources]}: only these
  transfer.regimes = {'full': None, 'n500': 500}           # -> input_pipeline.train_example_limit.limit
  transfer.seeds = [0, 1, 2]
  transfer.bindings = {'BATCH_SIZE': 16}                   # both stages
  transfer.source_bindings = {'TRAIN_STEPS': 300}          # stage 1 only
  transfer.target_bindings = {'TRAIN_STEPS': 200}          # stage 2 only
  transfer.source_sharing = 'hard'                         # stage 1 strategy (gin/sharing/<name>.gin)
  transfer.target_sharing = 'hard'
  transfer.init_task = None                                # per-task source: a task name, or 'mean'
  transfer.seeds_per_step = 1   # K: a cell's seeds K per trainer, one vmapped step (compare/seed_groups.py)
  transfer.sources_per_step = 1 # S: a target from S sources x K seeds per trainer (lanes, run/seeds_in_step.py)

A source equal to the target is skipped (no self-transfer) unless `include_self`.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Mapping, Sequence

import gin

from mtl_jax.compare import grid as compare_grid
from mtl_jax.compare.grid import Cell, slug

NONE = "none"  # the source label of baseline cells (no stage 1)
SEED_BINDING = "trainer.train.seed"
LIMIT_BINDING = "input_pipeline.train_example_limit.limit"
PER_TASK = ("soft", "sluice", "cross_stitch", "mmoe")


@dataclasses.dataclass(frozen=True)
class TransferExperiment:
  name: str = "transfer"
  gin_files: tuple = ()
  sources: tuple = ()
  targets: tuple = ()
  pairs: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
  regimes: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"full": None})
  seeds: tuple = (0,)
  bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  source_bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  target_bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  source_sharing: str = "hard"
  target_sharing: str = "hard"
  init_task: Any = None
  include_self: bool = False
  baseline: bool = True
  exp_dir: str | None = None
  parallel: int = 1
  seeds_per_step: int = 1  # K seeds of a cell per trainer (compare/seed_groups.py); targets too, each from its seed's source
  sources_per_step: int = 1  # S: stage-2 targets from S sources (x K seeds) per trainer, each lane its own source
  binary: tuple = ()
  env: Mapping[str, str] = dataclasses.field(default_factory=dict)
  description: str = ""

  def __post_init__(self):
    for field in ("gin_files", "sources", "targets", "seeds", "binary"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    for field in ("bindings", "source_bindings", "target_bindings", "regimes", "env"):
      object.__setattr__(self, field, dict(getattr(self, field)))
    object.__setattr__(self, "pairs", {k: list(v) for k, v in dict(self.pairs).items()})

  def validate(self) -> None:
    """One clear error for a grid that cannot run (before any cell is launched)."""
    if not self.gin_files:
      raise ValueError("transfer.gin_files is empty: name the gin file(s) every cell starts from, "
                       "e.g. gin/runs/quickstart.gin")
    if not self.targets:
      raise ValueError("transfer.targets is empty: name at least one target task")
    if not self.sources and not self.baseline:
      raise ValueError("no transfer.sources and no baseline: nothing to run")
    if NONE in self.sources:
      raise ValueError(f"{NONE!r} is the baseline's label, not a source; use transfer.baseline = True")
    if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
      raise ValueError(f"transfer.seeds must be a non-empty list of ints >= 0, got {list(self.seeds)}")
    if len(set(self.seeds)) != len(self.seeds) or len(set(self.targets)) != len(self.targets):
      raise ValueError(f"transfer.seeds / targets have duplicates: {list(self.seeds)} / {list(self.targets)}")
    if not self.regimes:
      raise ValueError("transfer.regimes is empty; use {'full': None} for the whole training set")
    for label, limit in self.regimes.items():
      if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"transfer.regimes[{label!r}] = {limit!r}: use None (all) or an int >= 1 examples")
    for target, sources in self.pairs.items():
      if target not in self.targets:
        raise ValueError(f"transfer.pairs names target {target!r}, which is not in transfer.targets")
      unknown = [s for s in sources if s not in self.sources]
      if unknown:
        raise ValueError(f"transfer.pairs[{target!r}] names {unknown}, not in transfer.sources")
    if self.parallel < 1:
      raise ValueError(f"transfer.parallel must be >= 1, got {self.parallel}")
    for field in ("seeds_per_step", "sources_per_step"):
      value = getattr(self, field)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"transfer.{field} must be an int >= 1 (--{field}), got {value!r}")
    for key in ("MODEL_DIR", "MIXTURE_OR_TASK_NAME", SEED_BINDING, LIMIT_BINDING, "init_from.model_dir"):
      for where in ("bindings", "source_bindings", "target_bindings"):
        if key in getattr(self, where):
          raise ValueError(f"{key} is set by the transfer grid itself; remove it from transfer.{where}")
    if self.source_sharing in PER_TASK and self.init_task is None:
      raise ValueError(f"transfer.source_sharing={self.source_sharing!r} keeps one trunk per "
                       f"{'expert' if self.source_sharing == 'mmoe' else 'task'}: set transfer.init_task "
                       "(a task name, an expert index, or 'mean')")
    compare_grid.check_gin_files([*self.gin_files, self.sharing_gin(self.source_sharing),
                                  self.sharing_gin(self.target_sharing)])
    compare_grid.check_macros(self.gin_files, [*self.bindings, *self.source_bindings, *self.target_bindings])

  @staticmethod
  def sharing_gin(strategy: str) -> str:
    return strategy if strategy.endswith(".gin") else f"gin/sharing/{strategy}.gin"

  def command(self) -> tuple:
    return self.binary or (sys.executable, "-m", "mtl_jax.train", "--no_progress")

  def sources_for(self, target: str) -> list[str]:
    sources = self.pairs.get(target, self.sources) if self.pairs else self.sources
    return [s for s in sources if self.include_self or s != target]

  def _cell(self, cell_id, kind, sharing, mixture, seed, axes, extra) -> Cell:
    stage = self.source_bindings if kind == "source" else self.target_bindings
    bindings = [("MIXTURE_OR_TASK_NAME", compare_grid.task_binding(mixture, self.gin_files)), (SEED_BINDING, seed), *self.bindings.items(),
                *stage.items(), *extra]
    return Cell(cell_id=cell_id, kind=kind, strategy=sharing, mixture=mixture, seed=int(seed), axes=tuple(axes),
                gin_files=(*self.gin_files, self.sharing_gin(sharing)), bindings=tuple(bindings))

  def source_cell(self, source: str, seed: int) -> Cell:
    return self._cell(f"source__{slug(source)}__seed{seed}", "source", self.source_sharing, source, seed,
                      (("source", source),), ())

  def source_cells(self) -> list[Cell]:
    used = list(dict.fromkeys(s for t in self.targets for s in self.sources_for(t)))
    return [self.source_cell(s, seed) for seed in self.seeds for s in used]

  def target_cells(self, source_dir) -> list[Cell]:
    """Stage 2 cells, seed-major; `source_dir(cell)` is a stage-1 cell's MODEL_DIR."""
    out = []
    for seed in self.seeds:
      for target in self.targets:
        for regime, limit in self.regimes.items():
          for source in ([NONE] if self.baseline else []) + self.sources_for(target):
            extra = [(LIMIT_BINDING, limit)] if limit is not None else []
            if source != NONE:
              extra.append(("init_from.model_dir", str(source_dir(self.source_cell(source, seed)))))
              if self.init_task is not None:
                extra.append(("init_from.task", self.init_task))
            cell_id = f"target__{slug(source)}__to__{slug(target)}__{slug(regime)}__seed{seed}"
            out.append(self._cell(cell_id, "target", self.target_sharing, target, seed,
                                  (("source", source), ("target", target), ("regime", regime)), extra))
    return out

  def to_json(self) -> dict:
    return compare_grid._jsonable(dataclasses.asdict(self))


@gin.configurable("transfer", module="mtl_jax.transfer.grid")
def transfer(**fields) -> TransferExperiment:
  """The gin-bound spec (every `transfer.<field>` binding) as a TransferExperiment."""
  return compare_grid.spec_from_fields(TransferExperiment, "transfer", fields)


def load(gin_files: Sequence[str] = (), bindings: Sequence[str] = (), **overrides) -> TransferExperiment:
  """Parses experiment gin files + `transfer.KEY = VALUE` bindings; flags override fields."""
  return compare_grid.load_spec(transfer, gin_files, bindings, **overrides)
