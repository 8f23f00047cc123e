"""seqio examples -> fixed-shape numpy batches for the multi-task encoder.

Every task emits the same feature set (see `tasks.registration.OUTPUT_FEATURES`):
'inputs' token ids, 'label' (int class), 'score' (float target), 'tags' (per-token
class ids aligned with 'inputs', -1 = no label) and a passthrough 'task' name.
This converter pads/trims to TASK_FEATURE_LENGTHS['inputs'] and turns the task name
into `task_id`, the index of the task in the sorted list of the run's tasks.

Model features (all fixed shape, batch-major):
  input_ids  int32 [B, L]    0 = padding
  input_mask int32 [B, L]    1 on real tokens
  task_id    int32 [B]
  label      int32 [B]       class of classification tasks (0 elsewhere)
  score      float32 [B]     regression target (0 elsewhere)
  tags       int32 [B, L]    tagging targets, -1 where there is no label
  token_type_ids int32 [B, L]  segment of each token (1 on a native pair's second text), 0 elsewhere
  weight     float32 [B]     1 for real examples, 0 for eval padding
The 'grouped' train layout (mtl_jax.input.input_pipeline) has the same features with a
leading task axis, [T, b, ...]; `input_pipeline.flatten_grouped` gives [T*b, ...].
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

MODEL_FEATURES = ("input_ids", "input_mask", "task_id", "label", "score", "tags", "weight", "token_type_ids")


def check_feature_lengths(task_feature_lengths: Mapping[str, int]) -> int:
  """Returns the input length; raises one clear error for a bad TASK_FEATURE_LENGTHS."""
  if not isinstance(task_feature_lengths, Mapping) or "inputs" not in task_feature_lengths:
    raise ValueError(
        f"TASK_FEATURE_LENGTHS must be a dict with an 'inputs' length, got {task_feature_lengths!r}; "
        "set e.g. --gin.TASK_FEATURE_LENGTHS=\"{'inputs': 128}\"")
  length = task_feature_lengths["inputs"]
  if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
    raise ValueError(
        f"TASK_FEATURE_LENGTHS['inputs'] must be a positive int, got {length!r}; "
        "set e.g. --gin.TASK_FEATURE_LENGTHS=\"{'inputs': 128}\"")
  return length


class EncoderFeatureConverter:
  """Pads a seqio dataset of (mixed) task examples to the model features above."""

  def __init__(self, task_names: Sequence[str]):
    self.task_names = tuple(task_names)
    keys = tf.constant(list(self.task_names))
    self._table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, tf.range(len(self.task_names), dtype=tf.int32)),
        default_value=-1)

  def __call__(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    length = check_feature_lengths(task_feature_lengths)

    def convert(ex):
      ids = ex["inputs"][:length]
      n = tf.shape(ids)[0]
      pad = length - n
      tags = tf.cast(ex["tags"], tf.int32)[:length]
      tags = tf.pad(tags, [[0, length - tf.shape(tags)[0]]], constant_values=-1)
      types = tf.cast(ex["token_type"], tf.int32)[:length] if "token_type" in ex else tf.zeros([0], tf.int32)
      types = tf.pad(types, [[0, length - tf.shape(types)[0]]])
      task_id = self._table.lookup(ex["task"])
      tf.debugging.assert_non_negative(task_id, message="example of a task outside this run's task list")
      return {
          "input_ids": tf.pad(tf.cast(ids, tf.int32), [[0, pad]]),
          "input_mask": tf.pad(tf.ones([n], tf.int32), [[0, pad]]),
          "task_id": task_id,
          "label": tf.cast(ex["label"], tf.int32),
          "score": tf.cast(ex["score"], tf.float32),
          "tags": tags,
          "weight": tf.constant(1.0, tf.float32),
          "token_type_ids": types,
      }

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def pad_batch(batch: Mapping[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
  """Pads a short (final eval) batch to `batch_size` rows with weight 0."""
  n = len(batch["task_id"])
  if n == batch_size:
    return dict(batch)
  out = {}
  for k, v in batch.items():
    fill = -1 if k == "tags" else 0
    pad = np.full((batch_size - n,) + v.shape[1:], fill, dtype=v.dtype)
    out[k] = np.concatenate([v, pad], axis=0)
  return out
