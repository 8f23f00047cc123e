"""TextEmb (Vu et al. 2020): the mean of a trunk's token representations over a task's training text.

No labels needed. Every layer's mean is kept ([K+1, D]: embeddings, then each layer; the last slot,
after the closing LayerNorm of a pre-LN trunk, is the TextEmb proper). The mean is over real tokens
(padding excluded), so a long text weighs more than a short one, as in the paper. Reuses mtl-probe's
frozen featurizer (`probe.featurize`: the same trunk specs, tokenisation and weights-fingerprint
cache folder), with mean pooling whatever the trunk's heads pool.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Iterable, Mapping

import gin
import numpy as np

from mtl_jax.probe import featurize


def mean_pooling(featurizer: featurize.Featurizer) -> featurize.Featurizer:
  """The same trunk and weights, pooled by the masked mean (a [CLS]-pooling trunk included)."""
  if featurizer.config.pooling == "mean":
    return featurizer
  return dataclasses.replace(featurizer, config=dataclasses.replace(featurizer.config, pooling="mean"))


def token_mean(featurizer: featurize.Featurizer, batches: Iterable[Mapping[str, np.ndarray]]) -> dict:
  """{'mean': [K+1, D] float32, 'tokens': real tokens, 'examples': texts} over the batches."""
  featurizer = mean_pooling(featurizer)
  total, tokens, examples = None, 0, 0
  for batch in batches:
    mask = np.asarray(batch["input_mask"])
    count = mask.sum(axis=1).astype(np.float64)  # [B]
    pooled = featurizer.pooled(np.asarray(batch["input_ids"]), mask).astype(np.float64)  # [B, K+1, D]
    summed = (pooled * count[:, None, None]).sum(axis=0)  # masked mean x count = masked sum
    total = summed if total is None else total + summed
    tokens += int(count.sum())
    examples += len(mask)
  if not tokens:
    raise ValueError("no tokens to average: the task's split has no examples")
  return {"mean": (total / tokens).astype(np.float32), "tokens": tokens, "examples": examples}


def task_textemb(featurizer: featurize.Featurizer, task_name: str, length: int, split: str = "train",
                 max_examples: int | None = None, cache: pathlib.Path | None = None) -> dict:
  """A registered task's TextEmb, computed once per (trunk fingerprint, task, split, length, limit)."""
  folder = (cache or featurize.cache_root()) / f"{featurizer.name}-{featurizer.fingerprint}"
  limit = "" if max_examples is None else f".n{max_examples}"
  path = folder / f"{task_name}.{split}.L{length}{limit}.textemb.npz"
  if path.is_file():
    with np.load(path) as z:
      return {"mean": z["mean"], "tokens": int(z["tokens"]), "examples": int(z["examples"])}
  with gin.unlock_config():
    gin.bind_parameter("pretrained.checkpoint", featurizer.pretrained)  # tokenize as the trunk did

  def batches():
    left = max_examples
    for batch in featurize._examples(task_name, split, length):
      if left is not None:
        batch = {k: v[:left] for k, v in batch.items()}
        left -= len(batch["input_mask"])
      if len(batch["input_mask"]):
        yield batch
      if left is not None and left <= 0:
        return

  return featurize.write_cache(featurizer, path, token_mean(featurizer, batches()))
