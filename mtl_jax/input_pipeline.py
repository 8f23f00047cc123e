"""seqio Task/Mixture -> batches of model features (train stream and eval sets).

The train stream is seqio's (mixture sampling by its rates, shuffling with `seed`),
converted, batched with drop_remainder, and skipped by the number of batches
already consumed when resuming, so a resumed run sees the same batches.
"""

from __future__ import annotations

import difflib
from typing import Iterator, Mapping

import numpy as np
import seqio
import tensorflow as tf

from mtl_jax.features import EncoderFeatureConverter, pad_batch


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
  if isinstance(provider, seqio.Mixture):
    return tuple(sorted(t.name for t in provider.tasks))
  return (provider.name,)


def train_batches(provider, feature_lengths: Mapping[str, int], batch_size: int, seed: int,
                  start_batch: int = 0, shard_info: seqio.ShardInfo | None = None) -> Iterator[dict]:
  """Infinite iterator of numpy batches (this process's rows), starting at `start_batch`."""
  kwargs = dict(sequence_length=dict(feature_lengths), split="train", shuffle=True, seed=seed,
                num_epochs=None, shard_info=shard_info)
  if isinstance(provider, seqio.Mixture):
    kwargs["passthrough_features"] = ["task"]
  ds = provider.get_dataset(**kwargs)
  ds = EncoderFeatureConverter(task_names(provider))(ds, feature_lengths)
  ds = ds.batch(batch_size, drop_remainder=True).skip(start_batch).prefetch(2)
  return ds.as_numpy_iterator()


def eval_batches(task: seqio.Task, all_task_names, feature_lengths, batch_size: int,
                 split: str = "validation") -> list[dict]:
  """Every example of one task's split, in order, as padded batches (weight 0 = padding)."""
  ds = task.get_dataset(sequence_length=dict(feature_lengths), split=split, shuffle=False, num_epochs=1)
  ds = EncoderFeatureConverter(all_task_names)(ds, feature_lengths).batch(batch_size)
  return [pad_batch(b, batch_size) for b in ds.as_numpy_iterator()]
