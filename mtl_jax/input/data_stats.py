"""Per-task data statistics: `python -m mtl_jax.input.data_stats MIXTURE_OR_TASK [--module M ...]`.

Why: before training on a mixture, see what is in it: split sizes, label
distribution, token lengths under the task's own vocabulary (to choose
TASK_FEATURE_LENGTHS) and the mixing rates the train stream will use (gin-aware:
pass --gin_file=gin/mixing/temperature.gin to see those rates instead).
By default imports tasks.offline and tasks.synthetic (tasks.glue needs prepared
TFDS data; add it with --module tasks.glue).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import sys

import numpy as np

DEFAULT_MODULES = ("tasks.offline", "tasks.synthetic")
PERCENTILES = (50, 90, 99)


def split_stats(task, split: str, label_names=()) -> dict:
  """Size, label distribution and token-length percentiles of one task split.

  Lengths count the task vocabulary's tokens plus EOS, untruncated.
  """
  from mtl_jax.input import task_info
  info = task_info.get(task.name)
  ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1,
                        trim_output_features=False, try_in_mem_cache=False)
  lengths, labels, scores, tags = [], collections.Counter(), [], collections.Counter()
  for ex in ds.as_numpy_iterator():
    lengths.append(len(ex["inputs"]))
    if info.kind == "classification":
      labels[int(ex["label"])] += 1
    elif info.kind == "regression":
      scores.append(float(ex["score"]))
    else:
      tags.update(int(t) for t in ex["tags"] if t >= 0)
  out = {"examples": len(lengths)}
  if lengths:
    out["length"] = {f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES}
    out["length"]["max"] = int(max(lengths))
  names = info.label_names
  if info.kind == "classification":
    out["labels"] = {names[k] if k < len(names) else str(k): v for k, v in sorted(labels.items())}
  elif info.kind == "regression" and scores:
    out["score"] = {"mean": float(np.mean(scores)), "std": float(np.std(scores)),
                    "min": float(np.min(scores)), "max": float(np.max(scores))}
  elif info.kind == "tagging":
    out["tags"] = {names[k] if k < len(names) else str(k): v for k, v in sorted(tags.items())}
  return out


def stats(name: str) -> dict:
  """{'rates': {task: p}, 'tasks': {task: {'kind', 'splits': {split: split_stats}}}}."""
  from mtl_jax.input import input_pipeline, mixing, task_info
  provider = input_pipeline.get_provider(name)
  out = {"name": name, "rates": mixing.rates(provider), "tasks": {}}
  for task_name in input_pipeline.task_names(provider):
    task = input_pipeline.get_provider(task_name)
    out["tasks"][task_name] = {
        "kind": task_info.get(task_name).kind,
        "vocab_size": task.output_features["inputs"].vocabulary.vocab_size,
        "splits": {s: split_stats(task, s) for s in task.splits}}
  return out


def format_stats(record: dict) -> str:
  lines = [f"{record['name']}: {len(record['tasks'])} task(s)"]
  for task_name, t in record["tasks"].items():
    lines.append(f"\n{task_name}  kind={t['kind']}  vocab={t['vocab_size']}  "
                 f"mixing rate={record['rates'][task_name]:.4f}")
    for split, s in t["splits"].items():
      length = s.get("length", {})
      lens = " ".join(f"{k}={v:g}" for k, v in length.items())
      lines.append(f"  {split:<22} n={s['examples']:<7} tokens {lens}")
      for key in ("labels", "tags"):
        if key in s:
          total = max(sum(s[key].values()), 1)
          lines.append(f"    {key}: " + ", ".join(f"{k} {v} ({v / total:.1%})" for k, v in s[key].items()))
      if "score" in s:
        lines.append("    score: " + " ".join(f"{k}={v:.3f}" for k, v in s["score"].items()))
  lines.append("\neffective mixing rates: " +
               ", ".join(f"{k} {v:.4f}" for k, v in record["rates"].items()))
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m mtl_jax.input.data_stats", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("name", help="registered mixture or task")
  parser.add_argument("--module", action="append", default=None,
                      help=f"task module to import (repeatable; default {', '.join(DEFAULT_MODULES)})")
  parser.add_argument("--gin_file", action="append", default=[], help="gin file, e.g. a mixing rate choice")
  parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
  args = parser.parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  for module in args.module or DEFAULT_MODULES:
    importlib.import_module(module)
  if args.gin_file:
    from mtl_jax import train as train_lib
    train_lib.parse_gin(args.gin_file, [])
  try:
    record = stats(args.name)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(record, indent=2) if args.json else format_stats(record))
  return 0


if __name__ == "__main__":
  sys.exit(main())
