"""What the model needs to know about a task that a seqio.Task does not carry.

seqio Tasks describe data; the multi-task model also needs each task's head kind
('classification', 'regression', 'tagging', 'multiple_choice', 'span_qa') and its label set
(multiple choice: one name per choice slot, e.g. ('choice1', 'choice2'), the most choices;
extractive QA: ('start', 'end'), the two per-token logits). Task modules in
`tasks/` register both together through `tasks.registration.add_task`.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Sequence

HEAD_KINDS = ("classification", "regression", "tagging", "multiple_choice", "span_qa")


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """Head kind and labels of one task."""

  name: str
  kind: str
  label_names: tuple[str, ...] = ()

  def __post_init__(self):
    if self.kind not in HEAD_KINDS:
      raise ValueError(
          f"task {self.name!r}: unknown head kind {self.kind!r}; use one of {HEAD_KINDS}")
    if self.kind != "regression" and len(self.label_names) < 2:
      raise ValueError(
          f"task {self.name!r}: a {self.kind} task needs >= 2 label names, got {self.label_names!r}")

  @property
  def num_classes(self) -> int:
    """Output width of the head: 1 for regression and multiple choice (a scorer), else the number of labels."""
    return 1 if self.kind in ("regression", "multiple_choice") else len(self.label_names)


_REGISTRY: dict[str, TaskInfo] = {}


def register(info: TaskInfo) -> TaskInfo:
  _REGISTRY[info.name] = info
  return info


def get(name: str) -> TaskInfo:
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"no head information registered for task {name!r}.{hint} "
                     "Register tasks with tasks.registration.add_task.")
  return _REGISTRY[name]


def get_all(names: Sequence[str]) -> tuple[TaskInfo, ...]:
  return tuple(get(n) for n in names)
