"""How many examples of each task the input length cuts: one log line per run / prediction.

Why: a truncated input loses text silently (a long premise used to push the hypothesis out
entirely, #26); pairs now keep tokens of both texts (mtl_jax/input/pairs.py), but a user
should still see how much each task loses at TASK_FEATURE_LENGTHS['inputs']. An example is
truncated when its untruncated input (the task's own pipeline with no length: specials,
EOS, every text whole) is longer than the length.
"""

from __future__ import annotations

from typing import Mapping, Sequence


def counts(task_names: Sequence[str], length: int, splits: Sequence[str] = ("validation",),
           max_examples: int | None = None) -> dict:
  """{task: {split: (truncated, examples)}} for the splits each task has, over each split's first
  `max_examples` (the evaluated ones: gin evaluation.max_examples) or all (once per invocation: run/invocation.py)."""
  from mtl_jax.run import invocation
  return invocation.once(("truncation", tuple(task_names), length, tuple(splits), max_examples),
                         lambda: _counts(task_names, length, splits, max_examples))


def _counts(task_names: Sequence[str], length: int, splits: Sequence[str], max_examples: int | None = None) -> dict:
  import seqio
  from mtl_jax.step import evaluation
  out = {}
  for name in task_names:
    task = seqio.get_mixture_or_task(name)
    per = {}
    for split in splits:
      if split not in task.splits:
        continue
      ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1,
                            trim_output_features=False, try_in_mem_cache=False)
      cap = evaluation.task_cap(name, max_examples)  # the examples evaluation scores
      if cap is not None:
        ds = ds.take(cap)
      per[split] = tuple(map(sum, zip(*[(_cut(ex, length), 1) for ex in ds.as_numpy_iterator()]))) or (0, 0)
    out[name] = per
  return out


def _cut(ex, length: int) -> bool:
  """Whether `length` cuts the example: its whole input, or (multiple choice, per-pair layout) any pair
  longer than its share length // n_pairs (heads/multiple_choice.py)."""
  import numpy as np
  from mtl_jax.heads import multiple_choice
  tags = np.asarray(ex.get("tags", []))
  if tags.size and (tags <= multiple_choice.PAIR_TAG).any():
    _, sizes = np.unique(tags[tags <= multiple_choice.PAIR_TAG], return_counts=True)
    return bool(sizes.max() > length // len(sizes))
  return len(ex["inputs"]) > length


def line(found: Mapping[str, Mapping[str, tuple[int, int]]], length: int) -> str:
  """'truncated at inputs=L: task 3/40 validation, other 0/12 validation' (tasks with a cut first)."""
  parts = []
  for name, per in sorted(found.items(), key=lambda kv: (-sum(c for c, _ in kv[1].values()), kv[0])):
    parts.append(f"{name} " + ", ".join(f"{c}/{n} {split}" for split, (c, n) in per.items()))
  return f"truncated at inputs={length}: " + "; ".join(parts)
