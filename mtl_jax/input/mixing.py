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
Rates that change with the step: mtl_jax/input/mixing_schedule.py; what the stream delivered vs
intended: mtl_jax/input/mixing_monitor.py (this module imports neither).
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
  from mtl_jax.input import multilabel  # the group registry; no import cycle at module load
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
