"""Packing: several examples of ONE task in one row, so short texts stop paying for padding.

Why: every train row is padded to TASK_FEATURE_LENGTHS['inputs']; on the quickstart mixture only
~50% of token slots are real (issue #29). Packing fills a row with examples of the same task; the model keeps them apart (mtl_jax/models/segments.py: block-diagonal attention,
positions restarting per example, per-example pooling, heads and losses), so each example's
logits and loss are those it has alone.

Greedy and streaming (gin `packing.enabled = True`, gin/mixing/packed.gin): examples arrive in the
task's own (seeded, shuffled) order; `packing.open_rows` K rows stay open and each example joins the
first that fits it (tokens <= L, at most `packing.max_segments` examples, same task_id: a multi-label
group's stream alternates tasks); when none does, the oldest row is emitted and a new one opens.
Quickstart train texts at length 64 (2,000 per task): rotten_tomatoes 50% of token slots real padded,
74% packed with K = 1, 89% with K = 8, 94% with K = 32; vader_tweets 37% / 78% / 94% / 96%. The
packed stream is a pure function of the unpacked one: one seed gives the same rows in every process
and the trainer's skip-to-resume (input_pipeline.train_batches) replays it exactly. Mixing rates then
apply to rows (a task of short texts gets more examples per row). Eval stays unpacked (metrics are
per example either way).

A packed row (features.py's features, plus):
  segment_ids    int32 [L]   0 = padding, 1..S = the row's examples in the order they joined
  positions      int32 [L]   position within its own example (0 at each example's first token)
  label, score   [S]         per example (0 in empty slots); tags / token_type_ids stay per token
  segment_weight float32 [S] each example's weight (0 = empty slot)
  weight         float32 []  sum(segment_weight): the row's example count, so per-task means over
                             rows (losses.per_task_mean) are means over EXAMPLES
Public for benchmarks: `pack_examples(ds, length, max_segments, open_rows)` (the tf.data op itself lives in
pack_rows.py, so the train step can import this module without TensorFlow) and `fill_rate(batch)`.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import gin
import numpy as np

UNSUPPORTED_KINDS = ("span_qa",)  # its targets are token positions in a row of doc-stride windows


@gin.configurable("packing")
def settings(enabled: bool = False, max_segments: int = 8, open_rows: int = 32, log_every: int = 1000) -> dict:
  """Whether train rows are packed, the most examples per row, rows kept open to fill, fill-rate log period."""
  if not isinstance(enabled, bool):
    raise ValueError(f"packing.enabled must be True or False, got {enabled!r}")
  for name, value in (("max_segments", max_segments), ("open_rows", open_rows), ("log_every", log_every)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"packing.{name} must be an int >= 1, got {value!r}")
  return {"enabled": enabled, "max_segments": max_segments, "open_rows": open_rows, "log_every": log_every}


def enabled() -> bool:
  return settings()["enabled"]


def check(config, task_kinds: Sequence[str], names: Sequence[str] | None = None) -> None:
  """One line before anything is written when packing is on for a head it cannot serve. Every
  model_type reads segment ids (bert / electra: encoder.py, peft_layer.py; t5, deberta-v2, modernbert:
  their layout modules), so `config` (the trunk's EncoderConfig) refuses nothing today."""
  del config
  if not enabled():
    return
  names = list(names) if names is not None else [f"task {i}" for i in range(len(task_kinds))]
  bad = [f"{n} ({k})" for n, k in zip(names, task_kinds) if k in UNSUPPORTED_KINDS]
  if bad:
    raise ValueError(f"packing (gin/mixing/packed.gin) does not support head kind span_qa (answer positions "
                     f"index a row of doc-stride windows): {', '.join(bad)}; drop packed.gin or these tasks")


def pack_examples(ds: tf.data.Dataset, length: int, max_segments: int, open_rows: int = 1) -> tf.data.Dataset:
  """Converted examples -> packed rows: pack_rows.pack_examples, imported on call so that importing
  this module (the train step does, for `check`) does not load TensorFlow."""
  from mtl_jax.input import pack_rows
  return pack_rows.pack_examples(ds, length, max_segments, open_rows)


def maybe_pack(ds: tf.data.Dataset, length: int) -> tf.data.Dataset:
  """A task's converted train stream, packed when gin `packing.enabled` (the input pipeline's seam)."""
  conf = settings()
  return pack_examples(ds, length, conf["max_segments"], conf["open_rows"]) if conf["enabled"] else ds


def fill_rate(batch: Mapping[str, np.ndarray]) -> tuple[int, int]:
  """(real tokens, token slots) of a batch, padded or packed (weight-0 padding rows count as slots)."""
  mask = np.asarray(batch["input_mask"])
  return int((mask > 0).sum()), int(mask.size)


class FillRateLog:
  """Wraps the train batch iterator: counts real tokens / slots and examples / rows, and prints the
  realised fill rate at the first batch and every `log_every` batches (a pure observer)."""

  def __init__(self, batches: Iterator[dict], log_every: int):
    self.batches, self.log_every = batches, log_every
    self.real = self.slots = self.examples = self.rows = self.seen = 0

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    batch = next(self.batches)
    real, slots = fill_rate(batch)
    self.real, self.slots, self.seen = self.real + real, self.slots + slots, self.seen + 1
    self.examples += int((np.asarray(batch["segment_weight"]) > 0).sum())
    self.rows += int((np.asarray(batch["weight"]) > 0).sum())
    if self.seen == 1 or self.seen % self.log_every == 0:
      print(f"mtl_jax: packing: fill rate {self.rate:.3f} (real tokens / token slots) over {self.seen} batches, "
            f"{self.examples / max(self.rows, 1):.2f} examples per row", flush=True)
    return batch

  @property
  def rate(self) -> float:
    return self.real / max(self.slots, 1)


def logged(batches: Iterator[dict]) -> Iterator[dict]:
  """The train iterator, wrapped by FillRateLog when packing is on."""
  conf = settings()
  return FillRateLog(batches, conf["log_every"]) if conf["enabled"] else batches
