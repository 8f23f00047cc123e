"""Mixing rates (how often each task is sampled) and a monitor of what was realised.

Why: the mixing rate decides which tasks starve (jiant #342: proportional
sampling starved CoLA), so it must be explicit, switchable without touching task
code, and checked against what the stream actually delivered.

Two places rates come from:
  * registration: `proportional(maximum=...)` (T5's `rate_num_examples`) or a number,
    stored in the seqio.Mixture ('offline_all' uses proportional capped at 3000);
  * gin, read each time the training stream is built (`rates(provider)`):
      mixing.rates.strategy = 'mixture'      # default: the mixture's registered rates
                            | 'proportional' # train size, capped at `maximum`
                            | 'temperature'  # min(size, maximum) ** (1 / temperature)
                            | 'equal'        # every task alike
                            | 'explicit'     # `weights` = {'task': w, ...}, every task named
                            | 'unimax'       # UniMax (Chung et al. 2023): uniform, capped at
                                             # `max_epochs` epochs of each task over `budget`
    e.g. --gin_file=gin/mixing/temperature.gin changes the rates of ANY mixture.
Rates apply to the 'mixed' batch layout; the 'grouped' layout has equal fixed
slots per task (see input_pipeline), so its intended proportions are equal.
Rates that change with the step: mtl_jax/mixing_schedule.py (the monitor then compares
with the schedule's rates averaged over the batches seen, and logs the rates of now).
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import gin
import numpy as np
import seqio

STRATEGIES = ("mixture", "proportional", "temperature", "equal", "explicit", "unimax")


@functools.lru_cache(maxsize=None)
def num_train_examples(task: seqio.Task) -> int:
  """Training-split size: the source's metadata, else counted once (cached per Task)."""
  n = task.source.num_input_examples("train")
  if n is None:
    ds = task.source.get_dataset("train", shuffle=False)
    n = ds.reduce(np.int64(0), lambda count, _: count + 1)
  return int(n)


def _rate(task, *, maximum=None, scale=1.0, temperature=1.0):
  n = float(num_train_examples(task))
  if maximum is not None:
    n = min(n, float(maximum))
  return (n * scale) ** (1.0 / temperature)


def proportional(maximum: int | None = None, scale: float = 1.0, temperature: float = 1.0):
  """Rate function for seqio.Mixture: train size, capped at `maximum`, ** (1/temperature)."""
  if temperature <= 0:
    raise ValueError(f"mixing temperature must be > 0, got {temperature}")
  return functools.partial(_rate, maximum=maximum, scale=scale, temperature=temperature)


def _tasks(provider) -> list[seqio.Task]:
  tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  return sorted(tasks, key=lambda t: t.name)


sorted_tasks = _tasks  # the provider's entries (tasks or multi-label groups), sorted by name


def task_names_sorted(provider) -> list[str]:
  return [t.name for t in _tasks(provider)]


def unimax(sizes: Mapping[str, float], budget: float, max_epochs: float = 1.0) -> dict[str, float]:
  """UniMax (Chung et al. 2023, Alg. 1): spend `budget` examples uniformly over the tasks,
  smallest first, never more than `max_epochs` epochs of a task; what a small task cannot use
  goes to the larger ones. Returns each task's share of the budget actually allocated."""
  if not budget > 0 or not max_epochs > 0:
    raise ValueError(f"UniMax needs budget > 0 and max_epochs > 0, got budget={budget!r}, "
                     f"max_epochs={max_epochs!r}; set mixing.rates.budget / mixing.rates.max_epochs")
  order = sorted(sizes, key=lambda n: (sizes[n], n))
  left, alloc = float(budget), {}
  for k, name in enumerate(order):
    alloc[name] = min(left / (len(order) - k), float(sizes[name]) * max_epochs)
    left -= alloc[name]
  total = sum(alloc.values())
  return {n: alloc[n] / total for n in sorted(sizes)}


def _budget(budget):
  """UniMax's budget in examples: given, else TRAIN_STEPS * BATCH_SIZE from gin."""
  if budget is not None:
    return float(budget)
  try:
    return float(gin.query_parameter("%TRAIN_STEPS")) * float(gin.query_parameter("%BATCH_SIZE"))
  except (ValueError, TypeError):
    raise ValueError("mixing.rates.strategy='unimax' needs a budget: set mixing.rates.budget "
                     "(examples) or the TRAIN_STEPS and BATCH_SIZE macros") from None


@gin.configurable(module="mixing")
def rates(provider, strategy: str = "mixture", maximum: int | None = None,
          temperature: float = 2.0, weights: Mapping[str, float] | None = None,
          budget: float | None = None, max_epochs: float = 1.0) -> dict[str, float]:
  """Sampling proportion per task name (sorted by name, summing to 1).

  `maximum` caps sizes for 'proportional'/'temperature'; `temperature` is used
  by 'temperature' only; `weights` by 'explicit' only; `budget` (examples; default
  TRAIN_STEPS * BATCH_SIZE) and `max_epochs` by 'unimax' only.
  """
  if strategy not in STRATEGIES:
    raise ValueError(f"mixing.rates.strategy={strategy!r}; use one of {STRATEGIES}")
  tasks = _tasks(provider)
  if strategy == "mixture":
    raw = {t.name: provider.get_rate(t) if isinstance(provider, seqio.Mixture) else 1.0 for t in tasks}
  elif strategy == "equal":
    raw = {t.name: 1.0 for t in tasks}
  elif strategy == "explicit":
    weights = dict(weights or {})
    names = {t.name for t in tasks}
    missing, extra = sorted(names - set(weights)), sorted(set(weights) - names)
    if missing or extra:
      raise ValueError(f"mixing.rates.weights must name exactly the tasks of {provider.name!r}; "
                       f"missing {missing}, not in it {extra}")
    raw = {t.name: float(weights[t.name]) for t in tasks}
  elif strategy == "unimax":
    raw = unimax({t.name: float(num_train_examples(t)) for t in tasks}, _budget(budget), max_epochs)
  else:
    temp = temperature if strategy == "temperature" else 1.0
    raw = {t.name: proportional(maximum=maximum, temperature=temp)(t) for t in tasks}
  if any(not np.isfinite(r) or r < 0 for r in raw.values()) or sum(raw.values()) <= 0:
    raise ValueError(f"mixing rates must be finite, >= 0 and not all 0; got {raw}")
  total = float(sum(raw.values()))
  return {name: float(r) / total for name, r in raw.items()}


def entry_to_task(provider) -> tuple[list[str], np.ndarray]:
  """(the run's task names, M [entries, tasks]): the share of each sampled entry's rows that
  belong to each task (one-hot for a task; label fractions for a multi-label group)."""
  from mtl_jax import multilabel  # the group registry; no import cycle at module load
  entries = task_names_sorted(provider)
  names = list(multilabel.expand(entries))
  matrix = np.zeros((len(entries), len(names)))
  for e, entry in enumerate(entries):
    for member, share in multilabel.row_shares(entry).items():
      matrix[e, names.index(member)] = share
  return names, matrix


def intended_proportions(provider, layout: str = "mixed") -> dict[str, float]:
  """What a batch stream should contain: `rates` for 'mixed' (mapped onto a multi-label
  group's member tasks by their share of its rows), equal for 'grouped'."""
  names, matrix = entry_to_task(provider)
  if layout == "grouped":
    return {n: 1.0 / len(names) for n in names}
  r = rates(provider)
  per_task = np.array([r[e] for e in task_names_sorted(provider)]) @ matrix
  return dict(zip(names, (per_task / per_task.sum()).tolist()))


class MixingMonitor:
  """Counts examples per task from batches' task_id; reports realised vs intended.

  `scalars()` gives, per task, 'mixing/realised/<task>' and 'mixing/intended/<task>',
  plus 'mixing/total_variation' (half the L1 distance), 'mixing/max_abs_z' (largest
  |count - N p| / sqrt(N p (1 - p)); |z| > ~4 means the rates are not what was
  intended, not sampling noise) and 'mixing/examples' (N).
  With a schedule (mtl_jax/mixing_schedule.py) 'intended' is the schedule's rates averaged
  over the batches seen, and per task also 'mixing/scheduled/<task>' (the rates of the
  latest batch) and, since the previous scalars() call, 'mixing/window_realised/<task>'
  vs 'mixing/window_intended/<task>': intended vs realised over time. The batch index
  comes from the counts (every train row has weight 1), so a resume that restores the
  counts continues exactly.
  """

  def __init__(self, task_names: Sequence[str], intended: Mapping[str, float], schedule=None,
               entry_matrix: np.ndarray | None = None):
    self.task_names = tuple(task_names)
    self._static = np.array([float(intended.get(n, 0.0)) for n in self.task_names])
    self.counts = np.zeros(len(self.task_names), np.int64)
    self.schedule = schedule
    self._matrix = entry_matrix if entry_matrix is not None else np.eye(len(self.task_names))
    self._sum, self._batches, self._rows = np.zeros(len(self.task_names)), 0, None
    self._window = (self.counts.copy(), np.zeros(len(self.task_names)))

  @classmethod
  def from_provider(cls, provider, layout: str = "mixed") -> "MixingMonitor":
    from mtl_jax import mixing_schedule
    intended = intended_proportions(provider, layout)
    schedule = mixing_schedule.schedule(provider) if layout == "mixed" else None
    _, matrix = entry_to_task(provider)
    return cls(sorted(intended), intended, schedule, matrix)

  def _scheduled(self, start: int, stop: int) -> np.ndarray:
    return self.schedule.mean_rates(start, stop) @ self._matrix

  def _seen_batches(self) -> int:
    return self.total // self._rows if self._rows else 0

  @property
  def intended(self) -> np.ndarray:
    if self.schedule is None:
      return self._static
    n = self._seen_batches()
    if n != self._batches:  # restored counts (resume): recompute the running sum once
      self._sum, self._batches = self._scheduled(0, n), n
    if n == 0:
      return self._scheduled(0, 1)
    return self._sum / self._sum.sum()

  def update(self, batch: Mapping[str, np.ndarray]) -> None:
    """Adds one batch (mixed [B] or grouped [T, b] task_id; weight-0 rows ignored)."""
    tid = np.asarray(batch["task_id"]).reshape(-1)
    if "weight" in batch:
      tid = tid[np.asarray(batch["weight"]).reshape(-1) > 0]
    if self.schedule is not None:
      self._rows = self._rows or len(tid)
      self.intended  # brings the running sum to the batches before this one
      self._sum = self._sum + self._scheduled(self._batches, self._batches + 1)
      self._batches += 1
    self.counts += np.bincount(tid, minlength=len(self.task_names))[:len(self.task_names)]

  @property
  def total(self) -> int:
    return int(self.counts.sum())

  def realised(self) -> np.ndarray:
    return self.counts / max(self.total, 1)

  def max_abs_z(self) -> float:
    n, p = self.total, self.intended
    if n == 0:
      return 0.0
    sd = np.sqrt(n * p * (1 - p))
    dev = np.abs(self.counts - n * p)
    z = np.where(sd > 0, dev / np.where(sd > 0, sd, 1.0), np.where(dev > 0, np.inf, 0.0))
    return float(z.max())

  def scalars(self) -> dict[str, float]:
    out = {"mixing/examples": float(self.total),
           "mixing/total_variation": float(0.5 * np.abs(self.realised() - self.intended).sum()),
           "mixing/max_abs_z": self.max_abs_z()}
    for name, r, q in zip(self.task_names, self.realised(), self.intended):
      out[f"mixing/realised/{name}"] = float(r)
      out[f"mixing/intended/{name}"] = float(q)
    if self.schedule is not None:
      out.update(self._over_time())
    return out

  def _over_time(self) -> dict[str, float]:
    counts0, sum0 = self._window
    if len(sum0) != len(self._sum) or sum0.sum() > self._sum.sum():
      counts0, sum0 = np.zeros_like(self.counts), np.zeros_like(self._sum)  # counts were restored
    seen, due = self.counts - counts0, self._sum - sum0
    self._window = (self.counts.copy(), self._sum.copy())
    now = self._scheduled(max(self._batches - 1, 0), max(self._batches, 1))
    out = {}
    for t, name in enumerate(self.task_names):
      out[f"mixing/scheduled/{name}"] = float(now[t])
      out[f"mixing/window_realised/{name}"] = float(seen[t] / max(seen.sum(), 1))
      out[f"mixing/window_intended/{name}"] = float(due[t] / max(due.sum(), 1e-12))
    return out
