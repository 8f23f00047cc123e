"""seqio Task/Mixture -> batches of model features (train stream and eval sets).

Train stream, per task: seqio Task dataset (this process's shard, repeated, shuffled
with a per-task seed derived from `seed` and the task name), converted to model
features. Then one of two layouts (gin: `input_pipeline.batch_layout.layout`):

  'mixed'    tasks sampled by `mixing.rates` (tf.data.sample_from_datasets), batched
             to [B, ...] with `task_id` per row.
  'grouped'  every task batched to b = ceil(B / T) rows, zipped and stacked to
             [T, b, ...] (same feature names, leading task axis; task_id[t] == t).
             Mixing rates do not apply: each task gets b rows per step. When T does
             not divide B, the first B mod T tasks get b real rows and the others
             b - 1 plus one weight-0 padding row (`grouped_rows`), so any BATCH_SIZE
             works (T * b rows in all; a divisible B gives exactly the old stream). The train
             step flattens [T, b] -> [T*b] (`flatten_grouped`), so task_id is sorted
             and group sizes are static: per-task towers can slice without gathers.

Determinism: every random choice is seeded from `seed` (data permutation, shuffle
buffer, task sampling) and tf.data runs deterministic, so one seed gives the same
batches byte for byte in any process. Resume: `start_batch=n` skips the first n
batches of that same stream. The skip replays the input pipeline (no model work,
no re-tokenization for in-memory tasks): measured ~4-5 ms per batch of 48 on 2
busy CPU cores, so a resume at step 10k replays ~45 s, at 100k ~8 min.
Per-task seeds depend on the task name, not its position: adding a task to a
mixture leaves the other tasks' example order unchanged.
Dynamic mixing (gin `mixing_schedule.schedule`, mtl_jax/input/mixing_schedule.py): the task of
row k of batch i is drawn from the schedule's rates at batch i with a stateless draw keyed
by (seed, shard, i), then taken from that task's stream (tf.data choose_from_datasets):
a pure function of the batch index, so skip-to-resume stays exact. 'static' (the default)
builds exactly the old stream. Multi-label groups (mtl_jax/input/multilabel.py) are one entry
whose rows are (input, task) pairs; in the grouped layout each member fills its own slot
from its own labelled inputs (per-task gradients stay per task).
Packing (gin `packing.enabled`, mtl_jax/input/packing.py): each task's converted stream is packed,
several of its examples per row, before mixing / batching; a pure function of that stream, so the
skip-to-resume stays exact. Rates then apply to rows.
Multi-host: with `shard_info`, every task's examples are split across processes
(disjoint per epoch, same permutation on every host since the seed is shared);
the task-sampling seed also folds in the shard index so hosts sample independently.
"""

from __future__ import annotations

import difflib
import hashlib
from typing import Iterator, Mapping

import gin
import numpy as np
import seqio
import tensorflow as tf

from mtl_jax.input import index_stream, mixing, mixing_monitor, mixing_schedule, multilabel, packing
from mtl_jax.input.features import EncoderFeatureConverter, pad_batch

LAYOUTS = ("mixed", "grouped")
MixingMonitor = mixing_monitor.MixingMonitor  # re-exported for the trainer


def get_provider(name: str) -> seqio.Task | seqio.Mixture:
  """The registered seqio Task or Mixture, or one clear error with close names."""
  known = sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))
  if name not in known:
    close = difflib.get_close_matches(str(name), known, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown task or mixture {name!r}.{hint} Known: {len(known)} names, "
                     "e.g. " + ", ".join(known[:6]) + ". Import the module that registers it in your gin file.")
  return seqio.get_mixture_or_task(name)


def task_names(provider) -> tuple[str, ...]:
  """The run's tasks in task_id order (sorted names; a multi-label group gives its members)."""
  if isinstance(provider, seqio.Mixture):
    return multilabel.expand(t.name for t in provider.tasks)
  return multilabel.expand([provider.name])


@gin.configurable(module="input_pipeline")
def batch_layout(layout: str = "mixed") -> str:
  """The train batch layout, 'mixed' or 'grouped' (gin-selectable; see module doc)."""
  if layout not in LAYOUTS:
    raise ValueError(f"input_pipeline.batch_layout.layout={layout!r}; use one of {LAYOUTS}")
  return layout


def derive_seed(seed: int, *parts) -> int:
  """A stable 31-bit seed from `seed` and labels (hash-based, same in every process)."""
  text = ":".join(str(p) for p in (seed, *parts))
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def _deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
  """The same elements in the same order on every run. Also: consecutive maps fused (seqio's, the feature
  converter's, packing's) and tf.data's autotuner off; the stream is unchanged (tests/test_pipeline_mixing.py),
  and a train batch of the tiny synthetic sweep costs ~3.2 ms of CPU instead of ~4.7 (issue #29: with K lanes
  per process the input pipeline, not the model, was a fifth of a launch)."""
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_fusion = True
  options.autotune.enabled = False
  return ds.with_options(options)


@gin.configurable(module="input_pipeline")
def train_example_limit(limit: int | None = None, subset_seed: int | None = None) -> dict:
  """Train every task on at most `limit` training examples (a limited-data regime, e.g. 500).

  The subset is a uniform sample of the train split drawn with `subset_seed` (None: the run's
  seed, so seeds also vary the subset, as in Vu et al. 2020), then repeated and shuffled as usual.
  """
  if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
    raise ValueError(f"input_pipeline.train_example_limit.limit must be None or an int >= 1, got {limit!r}")
  if subset_seed is not None and (not isinstance(subset_seed, int) or subset_seed < 0):
    raise ValueError(f"input_pipeline.train_example_limit.subset_seed must be None or an int >= 0, "
                     f"got {subset_seed!r}")
  return {"limit": limit, "subset_seed": subset_seed}


def _limited_train_dataset(task: seqio.Task, feature_lengths, seed: int, limit: int, subset_seed: int,
                           shard_info: seqio.ShardInfo | None) -> tf.data.Dataset:
  """`limit` examples drawn uniformly from the whole split (before sharding), repeated forever."""
  ds = task.get_dataset(sequence_length=dict(feature_lengths), split="train", shuffle=False,
                        num_epochs=1, try_in_mem_cache=False)
  ds = ds.shuffle(1 << 20, seed=derive_seed(subset_seed, "subset", task.name), reshuffle_each_iteration=False)
  ds = ds.take(limit)
  if shard_info is not None and shard_info.num_shards > 1:
    ds = ds.shard(shard_info.num_shards, shard_info.index)
  return ds.cache().shuffle(limit, seed=derive_seed(seed, "task", task.name)).repeat()


def task_train_dataset(task: seqio.Task, all_task_names, feature_lengths, seed: int,
                       shard_info: seqio.ShardInfo | None = None) -> tf.data.Dataset:
  """One task's infinite, shuffled, converted training examples (this process's shard)."""
  cap = train_example_limit()
  if cap["limit"] is not None:
    subset_seed = seed if cap["subset_seed"] is None else cap["subset_seed"]
    ds = _limited_train_dataset(task, feature_lengths, seed, cap["limit"], subset_seed, shard_info)
  else:
    ds = task.get_dataset(sequence_length=dict(feature_lengths), split="train", shuffle=True,
                          seed=derive_seed(seed, "task", task.name), num_epochs=None,
                          shard_info=shard_info, try_in_mem_cache=False)
  ds = EncoderFeatureConverter(all_task_names)(ds, feature_lengths)
  return packing.maybe_pack(ds, feature_lengths["inputs"])  # gin packing.enabled: several examples per row


def mixed_dataset(provider, feature_lengths, batch_size: int, seed: int,
                  shard_info: seqio.ShardInfo | None = None) -> tf.data.Dataset:
  """[B, ...] batches of tasks sampled by `mixing.rates(provider)`."""
  names = task_names(provider)
  schedule = mixing_schedule.schedule(provider)
  proportions = mixing.rates(provider) if schedule is None else None  # a schedule may revive a task
  tasks = [t for t in mixing.sorted_tasks(provider)
           if (schedule is not None or proportions[t.name] > 0) and "train" in t.splits]
  if not tasks:
    raise ValueError(f"{provider.name!r}: no task with a train split and a rate > 0")
  datasets = [task_train_dataset(t, names, feature_lengths, seed, shard_info) for t in tasks]
  if schedule is not None:
    ds = _scheduled_rows(datasets, [mixing.task_names_sorted(provider).index(t.name) for t in tasks],
                         schedule, batch_size, derive_seed(seed, "sample", shard_info.index if shard_info else 0))
  elif len(datasets) == 1:
    ds = datasets[0]
  else:
    shard = shard_info.index if shard_info else 0
    ds = tf.data.Dataset.sample_from_datasets(
        datasets, weights=[proportions[t.name] for t in tasks],
        seed=derive_seed(seed, "sample", shard), stop_on_empty_dataset=True)
  return ds.batch(batch_size, drop_remainder=True)


def _scheduled_rows(datasets, columns, schedule, batch_size: int, seed: int) -> tf.data.Dataset:
  """Rows whose tasks follow `schedule`: batch i's `batch_size` tasks are drawn from its rates
  at i (renormalised over `columns`, the entries with a train stream) by a stateless draw."""
  columns = np.asarray(columns, np.int64)

  def rates(i):
    r = schedule.rates_at([int(i)])[0][columns]
    return np.log(np.maximum(r, 1e-30) if r.sum() > 0 else np.ones_like(r)).astype(np.float32)

  def draw(i):
    logits = tf.numpy_function(rates, [i], tf.float32, stateful=False)
    logits = tf.reshape(logits, [1, len(columns)])
    logits = tf.where(logits < -60.0, tf.constant(-1e9, tf.float32), logits)  # rate 0: never drawn
    choice = tf.random.stateless_categorical(logits, batch_size, seed=tf.stack([tf.constant(seed, tf.int64), i]))
    return tf.cast(choice[0], tf.int64)

  choices = tf.data.Dataset.range(np.iinfo(np.int64).max).map(draw).unbatch()
  return tf.data.Dataset.choose_from_datasets(list(datasets), choices, stop_on_empty_dataset=True)


def grouped_rows(batch_size: int, num_tasks: int) -> tuple[int, list[int]]:
  """(rows per task group b = ceil(B / T), real rows of each task): the first B mod T tasks
  fill their group, the others leave one weight-0 padding row."""
  per_task = -(-batch_size // num_tasks)
  extra = batch_size % num_tasks or num_tasks
  return per_task, [per_task if t < extra else per_task - 1 for t in range(num_tasks)]


def check_grouped(batch_size: int, processes: int, num_tasks: int, data_size: int) -> None:
  """The padded grouped batch (T * ceil(B_process / T) rows per process) must split over the
  mesh's data axis; one line naming the sizes and the fix otherwise."""
  per_process = batch_size // processes
  rows = num_tasks * grouped_rows(per_process, num_tasks)[0] * processes
  if rows % data_size:
    raise ValueError(f"grouped batches: BATCH_SIZE={batch_size} gives {num_tasks} task groups of "
                     f"{rows // (num_tasks * processes)} rows ({rows} rows, padded to whole groups), not divisible "
                     f"by the mesh's data axis ({data_size}); use a BATCH_SIZE that is a multiple of "
                     f"{int(np.lcm(num_tasks * processes, data_size))}")


def _pad_group(group, real: int, rows: int, task_index: int):
  """The first `real` rows of a task's group, padded to `rows` with weight-0 rows of that task."""
  out = {}
  for k, v in group.items():
    fill = -1 if k == "tags" else (task_index if k == "task_id" else 0)
    pad = [[0, rows - real]] + [[0, 0]] * (len(v.shape) - 1)
    out[k] = tf.pad(v[:real], pad, constant_values=tf.cast(fill, v.dtype))
  return out


def grouped_dataset(provider, feature_lengths, batch_size: int, seed: int,
                    shard_info: seqio.ShardInfo | None = None) -> tf.data.Dataset:
  """[T, ceil(batch_size / T), ...] batches: a fixed slot of rows per task, task t at index t
  (weight-0 padding rows when T does not divide batch_size: grouped_rows)."""
  names = task_names(provider)
  if mixing_schedule.schedule(provider) is not None:
    raise ValueError("a mixing schedule (mixing_schedule.schedule.kind) needs the 'mixed' batch layout; the "
                     "'grouped' layout gives every task a fixed slot: drop gin/mixing/grouped.gin or the schedule")
  tasks = [seqio.get_mixture_or_task(n) for n in names]  # a multi-label group: its members' own tasks
  no_train = [t.name for t in tasks if "train" not in t.splits]
  if no_train:
    raise ValueError(f"grouped batches need a train split for every task; missing in {no_train}")
  per_task, real = grouped_rows(batch_size, len(tasks))
  datasets = []
  for index, (task, rows) in enumerate(zip(tasks, real)):
    ds = task_train_dataset(task, names, feature_lengths, seed, shard_info).batch(max(rows, 1), drop_remainder=True)
    if rows < per_task:  # (rows == 0 when B < T: one example read, none kept)
      ds = ds.map(lambda g, rows=rows, index=index: _pad_group(g, rows, per_task, index))
    datasets.append(ds)
  return tf.data.Dataset.zip(tuple(datasets)).map(
      lambda *groups: {k: tf.stack([g[k] for g in groups]) for k in groups[0]},
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def train_batches(provider, feature_lengths: Mapping[str, int], batch_size: int, seed: int,
                  start_batch: int = 0, shard_info: seqio.ShardInfo | None = None,
                  layout: str | None = None) -> Iterator[dict]:
  """Infinite iterator of numpy batches (this process's rows), starting at `start_batch`.

  `layout` defaults to the gin-configured `batch_layout()`.
  """
  layout = batch_layout(layout) if layout is not None else batch_layout()
  if layout == "mixed":  # in-memory tasks: the same stream from a table converted once (input/index_stream.py)
    fast = index_stream.train_batches(provider, task_names(provider), feature_lengths, batch_size, seed,
                                      start_batch, shard_info, derive_seed, train_example_limit()["limit"])
    if fast is not None:
      return fast
  build = mixed_dataset if layout == "mixed" else grouped_dataset
  ds = build(provider, feature_lengths, batch_size, seed, shard_info)
  ds = _deterministic(ds.skip(start_batch).prefetch(2))
  return packing.logged(ds.as_numpy_iterator())  # packed rows: the realised fill rate, printed


def flatten_grouped(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """[T, b, ...] -> [T*b, ...] (task-major: rows t*b .. t*b+b-1 belong to task t)."""
  return {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items()}


def eval_splits(task: seqio.Task) -> tuple[str, ...]:
  """Splits to evaluate: 'validation', then any 'validation_<x>' (e.g. MNLI mismatched)."""
  extra = sorted(s for s in task.splits if s.startswith("validation_"))
  return tuple(["validation"] * ("validation" in task.splits) + extra)


def eval_batches(task: seqio.Task, all_task_names, feature_lengths, batch_size: int,
                 split: str = "validation", max_examples: int | None = None) -> list[dict]:
  """Every example of one task's split (or its first `max_examples`), in order, as padded batches
  (weight 0 = padding)."""
  ds = task.get_dataset(sequence_length=dict(feature_lengths), split=split, shuffle=False,
                        num_epochs=1, try_in_mem_cache=False)
  if max_examples is not None:
    ds = ds.take(max_examples)
  ds = EncoderFeatureConverter(all_task_names)(ds, feature_lengths).batch(batch_size)
  return [pad_batch(b, batch_size) for b in _deterministic(ds).as_numpy_iterator()]
