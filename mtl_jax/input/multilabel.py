"""Multi-label groups: one input labelled for several tasks (some labels may be missing).

Why: the sluice-networks / OntoNotes setting (and LibMTL issues 11, 63) labels the same
sentences for several tasks. A group is one seqio Task (the mixture entry, sampled with one
rate) whose stream gives, for each input, one row per task it has a label for, those rows
next to each other; missing labels give no row, so every loss, weighting method (per-task
means over the rows a task has) and metric masks them with no special case. Each member
is also an ordinary seqio Task over its labelled inputs (evaluation, metrics, heads,
training it alone). A run over a mixture holding a group has the group's MEMBERS as tasks.

Why rows and not a [B, T] label mask: every sharing strategy routes a row by its task
(soft towers, sluice columns, MMoE gates), so a row per (input, task) is what each head
needs; the cost is one trunk pass per label (hard sharing recomputes the shared trunk).

Registry only (tasks/multilabel.py registers groups): `expand(names)` turns entries into
the run's task names, `row_shares(name)` says how a group's rows split among its members.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Mapping


@dataclasses.dataclass(frozen=True)
class Group:
  name: str
  members: tuple[str, ...]                       # sorted task names
  label_counts: Callable[[str], Mapping[str, int]]  # split -> labelled inputs per member


_GROUPS: dict[str, Group] = {}


def register(group: Group) -> Group:
  clash = [m for m in group.members if m in _GROUPS]
  if clash or group.name in group.members:
    raise ValueError(f"multi-label group {group.name!r}: member names {clash or [group.name]} are group names; "
                     "give each member task its own name")
  _GROUPS[group.name] = group
  return group


def get(name: str) -> Group | None:
  return _GROUPS.get(name)


def members(name: str) -> tuple[str, ...]:
  """The tasks an entry trains: a group's members, else the task itself."""
  group = _GROUPS.get(name)
  return group.members if group else (name,)


def expand(names: Iterable[str]) -> tuple[str, ...]:
  """Entries -> the run's task names, sorted (identity when no entry is a group)."""
  out = sorted({m for n in names for m in members(n)})
  return tuple(out)


def row_shares(name: str) -> dict[str, float]:
  """The share of an entry's train rows that belong to each of its tasks."""
  group = _GROUPS.get(name)
  if group is None:
    return {name: 1.0}
  counts = group.label_counts("train")
  total = float(sum(counts.values()))
  return {m: counts[m] / total for m in group.members}
