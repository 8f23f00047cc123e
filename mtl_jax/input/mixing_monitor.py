"""MixingMonitor: what the training stream delivered per task vs what the rates intended.

Why its own module: it reads both the static rates (mixing.py) and the step-dependent
schedule (mixing_schedule.py, which builds on mixing.py), so it sits above both and
neither imports the other back.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mtl_jax.input import mixing, mixing_schedule


class MixingMonitor:
  """Counts examples per task from batches' task_id; reports realised vs intended.

  `scalars()` gives, per task, 'mixing/realised/<task>' and 'mixing/intended/<task>',
  plus 'mixing/total_variation' (half the L1 distance), 'mixing/max_abs_z' (largest
  |count - N p| / sqrt(N p (1 - p)); |z| > ~4 means the rates are not what was
  intended, not sampling noise) and 'mixing/examples' (N).
  With a schedule (mtl_jax/input/mixing_schedule.py) 'intended' is the schedule's rates averaged
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
    self.packed = False  # packed rows (segment_weight): counts are rows, each holding several examples

  @classmethod
  def from_provider(cls, provider, layout: str = "mixed") -> "MixingMonitor":
    intended = mixing.intended_proportions(provider, layout)
    schedule = mixing_schedule.schedule(provider) if layout == "mixed" else None
    _, matrix = mixing.entry_to_task(provider)
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
    """Adds one batch (mixed [B] or grouped [T, b] task_id; weight-0 rows ignored).

    Packed batches are counted in rows too: mixing rates apply to rows, and the schedule's batch
    index comes from the row counts; `packed` tells a reader the counts are rows, not examples.
    """
    self.packed = "segment_weight" in batch
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
  def unit(self) -> str:
    """What the counts count, for log lines."""
    return "packed rows" if self.packed else "examples"

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
