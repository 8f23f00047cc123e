"""The train stream of in-memory tasks as row indices into a table converted once: the same batches.

Why (issue #29): a task held in memory (tasks/registration.InMemorySource) is tokenized once, then
every epoch is one seeded permutation of the whole split, followed by per-example maps (seqio's
preprocessors and trimming, the feature converter) that do not depend on the order. So permuting the
row numbers with the same `shuffle(n, seed, reshuffle_each_iteration=True)` and looking the rows up
in a table converted once gives the very same stream: each task's indices are mixed by the same
`sample_from_datasets` draw, batched, and gathered in numpy. On the relatedness sweep's tiny tasks
tf.data spent ~65 us of CPU per example on those maps (1.1 CPU-s per 400 batches of 32, per lane);
here 0.35-0.45 CPU-s, and the K lanes of a seeds run share one table per task.

Used by `input_pipeline.train_batches` for the 'mixed' layout when every task qualifies: its source
declares the whole-split permutation (`permutes_whole_split`), it is not span QA (one question gives
several windows), packing and `train_example_limit` are off, no mixing schedule, one process, and the
converted split has one row per example and fits in `MAX_TABLE_BYTES`. Otherwise the tf.data
pipeline runs as before. gin `index_stream.enabled.value = False` turns it off (tests compare the two).
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import gin
import numpy as np
import seqio
import tensorflow as tf

from mtl_jax.input import mixing, mixing_schedule, packing, task_info
from mtl_jax.input.features import EncoderFeatureConverter
from mtl_jax.run import invocation

MAX_TABLE_BYTES = 512 << 20  # per task; a larger split keeps the tf.data pipeline


@gin.configurable(module="index_stream")
def enabled(value: bool = True) -> bool:
  """gin `index_stream.enabled.value`: use index streams where a run qualifies (module docstring)."""
  if not isinstance(value, bool):
    raise ValueError(f"index_stream.enabled.value must be True or False, got {value!r}")
  return value


def _qualifies(task: seqio.Task) -> bool:
  return getattr(task.source, "permutes_whole_split", False) and task_info.get(task.name).kind != "span_qa"


def _row_bytes(spec: Mapping[str, tf.TensorSpec], longest: int) -> int:
  """A converted row's bytes, a dimension the graph leaves open counted as the longest feature length."""
  return sum(int(np.prod([longest if d is None else d for d in s.shape])) * s.dtype.size for s in spec.values())


def _convert(task: seqio.Task, names: tuple, lengths: tuple) -> dict | None:
  """The task's train split converted in its stored order, {feature: [n, ...]}; None if it does not fit."""
  ds = task.get_dataset(sequence_length=dict(lengths), split="train", shuffle=False, num_epochs=1,
                        try_in_mem_cache=False)
  ds = EncoderFeatureConverter(names)(ds, dict(lengths))
  n = task.source.num_input_examples("train")
  if not n or n * _row_bytes(ds.element_spec, max(v for _, v in lengths)) > MAX_TABLE_BYTES:
    return None
  options = tf.data.Options()
  options.deterministic = True
  try:
    parts = list(ds.batch(4096).with_options(options).as_numpy_iterator())
  except tf.errors.InvalidArgumentError:  # rows of different shapes cannot form a table
    return None
  if sum(len(next(iter(p.values()))) for p in parts) != n:  # a preprocessor dropped or split examples
    return None
  return _frozen({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def _frozen(table: dict) -> dict:
  for value in table.values():
    value.setflags(write=False)  # shared by the lanes of a seeds run
  return table


def _table(task: seqio.Task, names: tuple, lengths: tuple) -> dict | None:
  return invocation.once(("index_stream_table", task.name, names, lengths), lambda: _convert(task, names, lengths))


def train_batches(provider, names: Sequence[str], feature_lengths: Mapping[str, int], batch_size: int,
                  seed: int, start_batch: int, shard_info, derive_seed, example_limit=None) -> Iterator[dict] | None:
  """The 'mixed' train stream of input_pipeline.mixed_dataset, or None when the run does not qualify.
  `derive_seed` is input_pipeline's (the per-task and sampling seeds must be the same ones);
  `example_limit`: its train_example_limit (a limited-data run keeps the tf.data pipeline)."""
  if not enabled() or packing.enabled() or mixing_schedule.schedule(provider) is not None:
    return None
  if example_limit is not None or (shard_info is not None and shard_info.num_shards > 1):
    return None
  proportions = mixing.rates(provider)
  tasks = [t for t in mixing.sorted_tasks(provider) if proportions[t.name] > 0 and "train" in t.splits]
  if not tasks or not all(_qualifies(t) for t in tasks):
    return None
  lengths = tuple(sorted(feature_lengths.items()))
  tables = [_table(t, tuple(names), lengths) for t in tasks]
  if any(t is None for t in tables):
    return None
  sizes = [len(next(iter(t.values()))) for t in tables]
  table = invocation.once(("index_stream_rows", tuple(t.name for t in tasks), tuple(names), lengths),
                          lambda: _frozen({k: np.concatenate([t[k] for t in tables]) for k in tables[0]}))
  offsets = np.cumsum([0] + sizes[:-1])
  # Built afresh on every call: a second iterator of one reshuffling dataset draws other permutations.
  streams = [tf.data.Dataset.range(n).shuffle(n, seed=derive_seed(seed, "task", t.name),
                                                reshuffle_each_iteration=True).map(lambda i, o=int(o): i + o).repeat()
             for t, n, o in zip(tasks, sizes, offsets)]
  if len(streams) == 1:
    ds = streams[0]
  else:
    ds = tf.data.Dataset.sample_from_datasets(streams, weights=[proportions[t.name] for t in tasks],
                                              seed=derive_seed(seed, "sample", 0), stop_on_empty_dataset=True)
  ds = ds.batch(batch_size, drop_remainder=True).skip(start_batch).prefetch(2)
  options = tf.data.Options()
  options.deterministic = True
  options.autotune.enabled = False
  return ({k: v[rows] for k, v in table.items()} for rows in ds.with_options(options).as_numpy_iterator())
