"""The tf.data op that packs a task's converted examples into rows (mtl_jax/input/packing.py says how
and why). Its own module so that the train step, which only needs packing's gin settings and check,
never loads TensorFlow (the accelerator machine's image has none)."""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf

TOKEN_KEYS = ("input_ids", "token_type_ids", "tags")  # per-token features copied into the row
SEGMENT_KEYS = (("label", tf.int32), ("score", tf.float32), ("segment_weight", tf.float32))


def _empty_row(length: int, max_segments: int) -> dict:
  row = {k: tf.zeros([length], tf.int32) for k in ("input_ids", "token_type_ids", "segment_ids", "positions")}
  row["tags"] = tf.fill([length], -1)
  row.update({k: tf.zeros([max_segments], dt) for k, dt in SEGMENT_KEYS})
  row.update(used=tf.constant(0), count=tf.constant(0), task_id=tf.constant(0))
  return row


def _append(row: dict, ex: Mapping[str, tf.Tensor], n, length: int, max_segments: int) -> dict:
  """`row` with `ex` (its first n tokens real, left-aligned) written after the row's used tokens."""
  idx = tf.range(length)
  start = row["used"]
  new = (idx >= start) & (idx < start + n)
  out = {k: tf.where(new, tf.roll(tf.cast(ex[k], tf.int32), start, axis=0), row[k]) for k in TOKEN_KEYS}
  out["segment_ids"] = tf.where(new, row["count"] + 1, row["segment_ids"])
  out["positions"] = tf.where(new, idx - start, row["positions"])
  slot = tf.range(max_segments) == row["count"]
  values = {"label": ex["label"], "score": ex["score"], "segment_weight": ex["weight"]}
  out.update({k: tf.where(slot, tf.cast(values[k], dt), row[k]) for k, dt in SEGMENT_KEYS})
  out.update(used=start + n, count=row["count"] + 1, task_id=tf.cast(ex["task_id"], tf.int32))
  return out


def _finish(row: dict) -> dict:
  out = {k: row[k] for k in (*TOKEN_KEYS, "segment_ids", "positions", "task_id", "label", "score",
                              "segment_weight")}
  out["input_mask"] = tf.cast(row["segment_ids"] > 0, tf.int32)
  out["weight"] = tf.reduce_sum(row["segment_weight"])
  return out


def _bins(row: dict, k: int) -> dict:
  return {name: tf.stack([v] * k) for name, v in row.items()}


def _select(cond_K, a: dict, b: dict) -> dict:
  """Per bin: a where cond_K, else b."""
  return {name: tf.where(tf.reshape(cond_K, [-1] + [1] * (len(v.shape) - 1)), v, b[name]) for name, v in a.items()}


def pack_examples(ds: tf.data.Dataset, length: int, max_segments: int, open_rows: int = 1) -> tf.data.Dataset:
  """Converted examples (features.EncoderFeatureConverter, padded to `length`) -> packed rows (module doc).

  `open_rows` K rows stay open: an example goes to the first that fits it; when none does, the oldest
  is emitted and a new row opens at the end (K = 1: consecutive examples only). Finite datasets end
  with their open rows, oldest first; infinite ones (a train stream) never end."""
  for name, value in (("max_segments", max_segments), ("open_rows", open_rows)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"packing.{name} must be an int >= 1, got {value!r}")
  k = open_rows
  empty = _empty_row(length, max_segments)
  empty_K = _bins(empty, k)
  shapes = {name: [length] if spec.shape.rank == 1 else [] for name, spec in ds.element_spec.items()}
  end_markers = tf.data.Dataset.from_tensors(  # K markers: each emits the oldest open row
      {**{name: tf.zeros(shapes[name], spec.dtype) for name, spec in ds.element_spec.items()},
       "end": tf.constant(True)}).repeat(k)
  marked = ds.map(lambda ex: {**{name: tf.reshape(v, shapes[name]) for name, v in ex.items()},
                              "end": tf.constant(False)})
  marked = marked.concatenate(end_markers)

  def shift(rows):  # the oldest row out, a fresh one at the end
    return {name: tf.concat([v[1:], empty_K[name][:1]], 0) for name, v in rows.items()}

  def step(rows, ex):
    n = tf.reduce_sum(tf.cast(ex["input_mask"], tf.int32))
    fits_K = ((rows["used"] + n <= length) & (rows["count"] < max_segments)
              & ((rows["count"] == 0) | (rows["task_id"] == tf.cast(ex["task_id"], tf.int32))))
    fits = tf.reduce_any(fits_K)
    emit = tf.where(ex["end"], rows["count"][0] > 0, ~fits)
    moved = shift(rows)
    base = _select(tf.fill([k], fits), rows, moved)
    j = tf.where(fits, tf.argmax(tf.cast(fits_K, tf.int32), output_type=tf.int32), k - 1)
    appended = _append({name: v[j] for name, v in base.items()}, ex, n, length, max_segments)
    after = _select(tf.range(k) == j, _bins(appended, k), base)
    after = _select(tf.fill([k], ex["end"]), moved, after)
    return after, (emit, _finish({name: v[0] for name, v in rows.items()}))

  def emitted(emit, row):  # noqa: ARG001
    return emit

  def row_of(emit, row):  # noqa: ARG001
    return row

  return marked.scan(empty_K, step).filter(emitted).map(row_of)
