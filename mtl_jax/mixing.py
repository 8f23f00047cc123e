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
    e.g. --gin_file=gin/mixing/temperature.gin changes the rates of ANY mixture.
Rates apply to the 'mixed' batch layout; the 'grouped' layout has equal fixed
slots per task (see input_pipeline), so its intended proportions are equal.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import gin
import numpy as np
import seqio

STRATEGIES = ("mixture", "proportional", "temperature", "equal", "explicit")


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


@gin.configurable(module="mixing")
def rates(provider, strategy: str = "mixture", maximum: int | None = None,
          temperature: float = 2.0, weights: Mapping[str, float] | None = None) -> dict[str, float]:
  """Sampling proportion per task name (sorted by name, summing to 1).

  `maximum` caps sizes for 'proportional'/'temperature'; `temperature` is used
  by 'temperature' only; `weights` by 'explicit' only.
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
  else:
    temp = temperature if strategy == "temperature" else 1.0
    raw = {t.name: proportional(maximum=maximum, temperature=temp)(t) for t in tasks}
  if any(not np.isfinite(r) or r < 0 for r in raw.values()) or sum(raw.values()) <= 0:
    raise ValueError(f"mixing rates must be finite, >= 0 and not all 0; got {raw}")
  total = float(sum(raw.values()))
  return {name: float(r) / total for name, r in raw.items()}


def intended_proportions(provider, layout: str = "mixed") -> dict[str, float]:
  """What a batch stream should contain: `rates` for 'mixed', equal for 'grouped'."""
  if layout == "grouped":
    names = [t.name for t in _tasks(provider)]
    return {n: 1.0 / len(names) for n in names}
  return rates(provider)


class MixingMonitor:
  """Counts examples per task from batches' task_id; reports realised vs intended.

  `scalars()` gives, per task, 'mixing/realised/<task>' and 'mixing/intended/<task>',
  plus 'mixing/total_variation' (half the L1 distance), 'mixing/max_abs_z' (largest
  |count - N p| / sqrt(N p (1 - p)); |z| > ~4 means the rates are not what was
  intended, not sampling noise) and 'mixing/examples' (N).
  """

  def __init__(self, task_names: Sequence[str], intended: Mapping[str, float]):
    self.task_names = tuple(task_names)
    self.intended = np.array([float(intended.get(n, 0.0)) for n in self.task_names])
    self.counts = np.zeros(len(self.task_names), np.int64)

  @classmethod
  def from_provider(cls, provider, layout: str = "mixed") -> "MixingMonitor":
    intended = intended_proportions(provider, layout)
    return cls(sorted(intended), intended)

  def update(self, batch: Mapping[str, np.ndarray]) -> None:
    """Adds one batch (mixed [B] or grouped [T, b] task_id; weight-0 rows ignored)."""
    tid = np.asarray(batch["task_id"]).reshape(-1)
    if "weight" in batch:
      tid = tid[np.asarray(batch["weight"]).reshape(-1) > 0]
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
    return out
