"""GLUE / SuperGLUE splits for conclusive comparisons: a dev split carved from TFDS train, TFDS
validation as the held-out test.

Why: the test labels of GLUE and SuperGLUE are hidden (-1), so the only labelled held-out data is
TFDS 'validation'. Selecting checkpoints and tuning on it, then reporting it, leaks the selection
into the number (issue "Conclusive comparisons"). So each task reads:

  train       TFDS train minus the carved dev examples
  validation  the dev split: TFDS train examples whose text falls in the carve (mtl_jax/data/splits.py
              `carved_split`: SHA-256 of DEV_SALT + the normalised text, ~DEV_PERCENT = 10 % of train,
              decided by the text alone: the same on every machine and every read, and an example
              repeated in train is on one side only)
  test        TFDS validation (MNLI: validation_matched); MNLI's validation_mismatched stays an extra
              evaluation split ('validation_mismatched', reported beside, never used for selection)

The text hashed is the task's text fields T5-joined ('f1: a f2: b', registration.join_fields), the
same string for the same example whatever the pair format. Sizes are not known in advance (a filter
over TFDS train): num_input_examples is None for the two carved splits and mixing counts them.
"""

from __future__ import annotations

from typing import Sequence

import seqio
import tensorflow as tf

from mtl_jax.data import splits as split_rule
from tasks import registration

CARVED = ("train", "validation")


def carved_splits(test_split: str = "validation", extra: dict | None = None) -> dict[str, str]:
  """seqio split -> TFDS split of a carved task: train and validation both read TFDS train."""
  return {"train": "train", "validation": "train", "test": test_split, **(extra or {})}


def _side(text) -> bytes:
  return split_rule.carved_split(text.numpy().decode("utf-8")).encode()


class CarvedTfdsSource(registration.TfdsSource):
  """A TfdsSource whose 'train' / 'validation' are the two sides of the carve of TFDS train."""

  def __init__(self, *, key_fields: Sequence[str], splits: dict[str, str], **kwargs):
    super().__init__(splits=splits, **kwargs)
    self.key_fields, self.split_map = tuple(key_fields), dict(splits)

  def key(self, ex) -> tf.Tensor:
    """The string the carve hashes: the text fields T5-joined."""
    return registration.join_fields(ex, self.key_fields)

  def side(self, ex) -> tf.Tensor:
    out = tf.py_function(_side, [self.key(ex)], tf.string)
    out.set_shape([])
    return out

  def get_dataset(self, split="train", shuffle=True, seed=None, shard_info=None, **kwargs):
    ds = super().get_dataset(split, shuffle, seed, shard_info, **kwargs)
    if split not in CARVED:
      return ds
    return ds.filter(lambda ex: tf.equal(self.side(ex), split))

  def num_input_examples(self, split: str):
    return None if split in CARVED else super().num_input_examples(split)


def carve(name: str, key_fields: Sequence[str], splits: dict[str, str] | None = None) -> seqio.Task:
  """Swaps registered task `name`'s TfdsSource for the carved one over the same TFDS dataset; `splits`:
  the split map it was registered with (default carved_splits())."""
  task = seqio.get_mixture_or_task(name)
  carved = CarvedTfdsSource(key_fields=key_fields, tfds_name=task.source.tfds_dataset.name,
                            splits=dict(splits or carved_splits()))
  seqio.TaskRegistry.remove(name)
  new = task.replace(source=carved)
  seqio.TaskRegistry.add_provider(name, new)
  return new
