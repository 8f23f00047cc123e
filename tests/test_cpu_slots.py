"""compare/cpu_slots.py: cells run side by side get disjoint cores; one at a time, every core."""

import os
import pathlib
import sys
import threading

import pytest

from mtl_jax.compare import cpu_slots, runner


def test_shares_split_the_cores_disjointly():
  assert cpu_slots.shares(range(2), 2) == [{0}, {1}]
  parts = cpu_slots.shares([3, 1, 2, 0, 5, 4, 6], 3)
  assert parts == [{0, 1, 2}, {3, 4}, {5, 6}]  # contiguous, the first shares one larger
  assert cpu_slots.shares(range(1), 2) is None and cpu_slots.shares(range(8), 1) is None


needs_two = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                               reason="needs Linux and >= 2 cores")


def _cores_of_children(tmp_path, parallel, env=None):
  """Runs 4 child processes through runner.for_each + subprocess_launcher; the cores each one saw."""
  script = "import os; print('CORES', sorted(os.sched_getaffinity(0)))"
  barrier = threading.Barrier(parallel) if parallel > 1 else None
  seen = {}

  def one(i):
    if barrier is not None and i < parallel:
      barrier.wait(10)  # every worker of the pool is busy at once: they hold different slots
    log = tmp_path / f"child{i}.log"
    assert runner.subprocess_launcher([sys.executable, "-c", script], log, dict(env or os.environ)) == 0
    line = [l for l in log.read_text().splitlines() if l.startswith("CORES")][0]
    seen[i] = (threading.current_thread().name, frozenset(eval(line.split(" ", 1)[1])))

  runner.for_each(range(4), one, parallel)
  return seen


@needs_two
def test_parallel_cells_are_pinned_to_disjoint_shares(tmp_path, monkeypatch):
  monkeypatch.delenv(cpu_slots.ENV, raising=False)
  everything = frozenset(os.sched_getaffinity(0))
  seen = _cores_of_children(tmp_path, 2)
  by_worker = {}
  for worker, cores in seen.values():
    by_worker.setdefault(worker, set()).add(cores)
  assert len(by_worker) == 2 and all(len(c) == 1 for c in by_worker.values())  # a worker keeps its slot
  a, b = (next(iter(c)) for c in by_worker.values())
  assert a and b and not (a & b) and a | b == everything


@needs_two
def test_one_at_a_time_or_opted_out_uses_every_core(tmp_path, monkeypatch):
  everything = frozenset(os.sched_getaffinity(0))
  assert {cores for _, cores in _cores_of_children(tmp_path, 1).values()} == {everything}
  monkeypatch.setenv(cpu_slots.ENV, "0")
  assert {cores for _, cores in _cores_of_children(tmp_path, 2).values()} == {everything}
