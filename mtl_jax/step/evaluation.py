"""Per-task evaluation with each task's seqio metric_fns, plus the unweighted average.

The headline score of a task is chosen by mtl_jax.step.metrics.headline (span F1 for
NER, MCC, Pearson, macro F1, accuracy...); 'average' is their unweighted mean.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Callable, Mapping, Sequence

import gin
import jax
import numpy as np
import seqio

from mtl_jax import heads as heads_lib
from mtl_jax.input import input_pipeline, task_info
from mtl_jax.step import metrics
from mtl_jax.input.features import pad_batch
from mtl_jax.run import invocation


@gin.configurable(module="evaluation")
def max_examples(value: int | None = None) -> int | None:
  """Score only the first `value` examples (the pipeline's fixed order) of each task's validation and test
  splits: a smoke run's quick check that a configuration trains and evaluates end to end, not a result to
  report (results.json's num_examples shows the count; the run prints a note). None: every example.
  Span-QA tasks are scored whole: their rows are windows that the metric matches to a whole split."""
  if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
    raise ValueError(f"evaluation.max_examples.value must be an int >= 1 or None (every example), got {value!r}")
  return value


def task_cap(task_name: str, cap: int | None) -> int | None:
  """`cap` for one task: span-QA tasks are scored whole (the metric matches their window rows to a split)."""
  return None if task_info.get(task_name).kind == "span_qa" else cap


def max_examples_note() -> str | None:
  """The line a capped run prints, or None when every example is scored."""
  cap = max_examples()
  if cap is None:
    return None
  return (f"mtl_jax: evaluation.max_examples.value={cap}: scoring at most the first {cap} examples of each "
          "validation / test split but span-QA tasks' (a smoke run: scores are not comparable with full evaluations)")


@gin.configurable(module="evaluation")
def pack_tasks(pack: bool | None = None, above: int = 32) -> Callable[[int], bool]:
  """Whether eval batches mix tasks: True / False, or None = when the run has > `above` tasks
  (runs of up to 32 tasks evaluate exactly as before: one task per batch)."""
  return lambda num_tasks: bool(pack) if pack is not None else num_tasks > above


class Evaluator:
  """Holds each task's validation batches (built once) and scores a predict function.

  Tasks with extra validation splits (MNLI's validation_mismatched) report them as
  '<split>/<metric>' inside the task's entry; the headline and the average use
  'validation' only.
  Packed (gin `evaluation.pack_tasks`, default for > 32 tasks): every task's examples go
  through the one compiled predict step in shared batches (task_id per row), so 128 tasks
  of 50 examples cost ceil(6400 / B) calls, not 128 mostly-padding ones: linear in the total
  number of eval examples, whatever the task count.
  """

  def __init__(self, task_names: Sequence[str], feature_lengths, batch_size: int,
               splits: Callable[[seqio.Task], Sequence[str]] | None = None, main_split: str = "validation"):
    """`splits(task)`: the splits to score (default: validation and validation_<x>); `main_split`'s
    metrics fill the task's entry and the average, the others are prefixed '<split>/'."""
    self.task_names = tuple(task_names)
    self.batch_size = batch_size
    self.main_split = main_split
    self.packed = pack_tasks()(len(self.task_names))
    if main_split == "validation" and max_examples_note() and jax.process_index() == 0:  # not again for test
      invocation.once(("max_examples_note",), lambda: print(max_examples_note(), flush=True))  # nor per lane
    self.batches, run_cap = {}, max_examples()
    for name in self.task_names:
      task, cap = seqio.get_mixture_or_task(name), task_cap(name, run_cap)
      for split in (splits or input_pipeline.eval_splits)(task):
        key = ("eval_batches", name, split, self.task_names, tuple(sorted(dict(feature_lengths).items())), batch_size,
               cap)
        batches = invocation.once(key, lambda: invocation.read_only(input_pipeline.eval_batches(
            task, self.task_names, feature_lengths, batch_size, split, cap)))  # lanes of a seeds run share them
        if not batches:
          raise ValueError(f"task {name!r} has an empty {split!r} split; it cannot be evaluated")
        self.batches[name, split] = batches

  def _score(self, name, split, predict) -> dict:
    info = task_info.get(name)
    head = heads_lib.KINDS[info.kind]
    targets, predictions = [], []
    for b, batch in enumerate(self.batches[name, split]):
      pred = np.asarray(predict(batch)[info.kind] if callable(predict) else predict[b][info.kind])
      for i in np.flatnonzero(batch["weight"] > 0):
        example = {k: v[i] for k, v in batch.items()}
        t, p = head.metric_pair(pred[i], example, info.label_names)
        targets.append(t)
        predictions.append(p)
    scores = {}
    for fn in seqio.get_mixture_or_task(name).metric_fns:
      scores.update({k: float(v) for k, v in fn(targets, predictions).items()})
    scores["headline"] = metrics.headline(scores)
    scores["num_examples"] = len(targets)
    return scores

  def packed_predictions(self, predict) -> dict:
    """{(task, split): [per original batch: {kind: predictions}]} from shared, packed batches."""
    keys = list(self.batches)
    rows = {k: [np.flatnonzero(b["weight"] > 0) for b in self.batches[k]] for k in keys}
    flat = {f: np.concatenate([b[f][r] for k in keys for b, r in zip(self.batches[k], rows[k])])
            for f in self.batches[keys[0]][0]}
    n, outs = len(flat["task_id"]), []
    for start in range(0, n, self.batch_size):
      chunk = pad_batch({f: v[start:start + self.batch_size] for f, v in flat.items()}, self.batch_size)
      got = predict(chunk)
      outs.append({kind: np.asarray(v)[:min(self.batch_size, n - start)] for kind, v in got.items()})
    every = {kind: np.concatenate([o[kind] for o in outs]) for kind in outs[0]}
    result, at = {}, 0
    for k in keys:
      result[k] = []
      for b, r in zip(self.batches[k], rows[k]):
        per = {}
        for kind, v in every.items():
          full = np.zeros((len(b["task_id"]),) + v.shape[1:], v.dtype)
          full[r] = v[at:at + len(r)]
          per[kind] = full
        result[k].append(per)
        at += len(r)
    return result

  def evaluate(self, predict: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]) -> dict:
    results = {}
    packed = self.packed_predictions(predict) if self.packed else None
    for name, split in self.batches:
      scores = self._score(name, split, packed[name, split] if packed else predict)
      if split == self.main_split:
        results.setdefault(name, {}).update(scores)
      else:
        results.setdefault(name, {}).update({f"{split}/{k}": v for k, v in scores.items()})
    average = float(np.mean([r["headline"] for r in results.values()]))
    return {"tasks": results, "average": average}


def write_results(model_dir: str | os.PathLike, step: int, evaluation: Mapping) -> dict:
  """Writes MODEL_DIR/results.json (latest) and appends to eval_history.jsonl."""
  record = {**evaluation, "step": int(step)}  # tasks, average (+ the final test keys: run/held_out.py)
  model_dir = pathlib.Path(model_dir)
  tmp = model_dir / "results.json.tmp"
  tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
  os.replace(tmp, model_dir / "results.json")
  with open(model_dir / "eval_history.jsonl", "a") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")
  return record


def write_mixing_weights(model_dir, step: int, weights: Mapping) -> None:
  """MODEL_DIR/mixing_weights.json (latest alpha/beta/gates) + a per-eval history line."""
  model_dir = pathlib.Path(model_dir)
  tmp = model_dir / "mixing_weights.json.tmp"
  tmp.write_text(json.dumps(weights))
  os.replace(tmp, model_dir / "mixing_weights.json")
  with open(model_dir / "mixing_weights_history.jsonl", "a") as f:
    f.write(json.dumps({"step": int(step), "weights": weights}) + "\n")


def constant_predictor(task_names: Sequence[str]):
  """Predicts each task's majority training label / mean training score / all-'O' tags.

  The baseline every model must beat; fitted on the training split only.
  """
  num = len(task_names)
  majority, mean = np.zeros(num, np.int64), np.zeros(num, np.float64)
  for t, name in enumerate(task_names):
    ds = seqio.get_mixture_or_task(name).source.get_dataset("train", shuffle=False)
    labels, scores = [], []
    for ex in ds.as_numpy_iterator():
      labels.append(int(ex["label"]))
      scores.append(float(ex["score"]))
    majority[t] = np.bincount(labels).argmax()
    mean[t] = float(np.mean(scores))

  def predict(batch):
    tid = batch["task_id"]
    return {"classification": majority[tid], "regression": mean[tid],
            "tagging": np.zeros_like(batch["tags"]),
            "multiple_choice": np.zeros(batch["tags"].shape, np.float32),  # equal scores: the first choice
            "span_qa": np.zeros(batch["tags"].shape + (2,), np.float32)}  # ties: the null / first span
  return predict
