"""Checks a task's Python examples before they reach the pipeline.

A label outside the head's classes or a NaN regression target would otherwise
surface as a silent NaN loss or a wrong metric many steps later; an empty split
as a hang or a division by zero. Each problem is one error naming the task,
split, example index and offending value.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def validate_examples(examples: Sequence[Mapping], *, task: str, split: str, kind: str,
                      num_labels: int) -> None:
  if not examples:
    raise ValueError(f"task {task!r} has an empty {split!r} split; every task needs train and "
                     "validation examples — check its data source")
  where = lambda i: f"task {task!r} {split} example {i}"
  for i, ex in enumerate(examples):
    if kind == "classification":
      label = ex.get("label")
      if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < num_labels:
        raise ValueError(f"{where(i)} has label {label!r} outside the head's {num_labels} classes "
                         f"[0, {num_labels - 1}]; fix the data or the task's label_names")
    elif kind == "regression":
      score = ex.get("score")
      if not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ValueError(f"{where(i)} has regression target {score!r}; targets must be finite "
                         "numbers — drop or fix that example")
    elif kind == "tagging":
      tokens, tags = ex.get("tokens", ()), ex.get("tags", ())
      if len(tokens) != len(tags) or not tokens:
        raise ValueError(f"{where(i)} has {len(tokens)} tokens but {len(tags)} tags; they must match "
                         "one to one and be non-empty")
      bad = [t for t in tags if not isinstance(t, int) or not 0 <= t < num_labels]
      if bad:
        raise ValueError(f"{where(i)} has tag {bad[0]!r} outside the head's {num_labels} tags")
