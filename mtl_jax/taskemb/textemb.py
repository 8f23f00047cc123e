"""TextEmb (Vu et al. 2020): a trunk's token representations averaged over a task's training text.

No labels needed. Every layer's mean is kept ([K+1, D]: embeddings, then each layer; the last slot,
after the closing LayerNorm of a pre-LN trunk, is the TextEmb proper; `components.of_layers` compares
the layers one by one). Pooling (`pooling`):
  'example' (default; the paper's released run_textemb_CR.py): each text's masked mean over its real
            tokens first, then the mean over texts, so a long text counts as much as a short one.
  'token'   (mtl_jax's former default): one mean over every real token of the split, so long texts weigh more.
What still differs from the paper: the trunk (any mtl-probe trunk, not BERT-base), its tokens (the
authors' mask counts [CLS]/[SEP]; ours counts the real tokens of our tokenizer), and the text length
(--max_length; the paper uses 128). A target can be embedded from its own limited-data regime
(`regime=(N, subset_seed)`: the very N-example subset input_pipeline.train_example_limit trains on).
Reuses mtl-probe's frozen featurizer (`probe.featurize`: trunk specs, tokenisation, weights-fingerprint
cache folder), with mean pooling whatever the trunk's heads pool.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Iterable, Mapping

import gin
import numpy as np

from mtl_jax.probe import featurize

POOLING = ("example", "token")


def mean_pooling(featurizer: featurize.Featurizer) -> featurize.Featurizer:
  """The same trunk and weights, pooled by the masked mean (a [CLS]-pooling trunk included)."""
  if featurizer.config.pooling == "mean":
    return featurizer
  return dataclasses.replace(featurizer, config=dataclasses.replace(featurizer.config, pooling="mean"))


def text_mean(featurizer: featurize.Featurizer, batches: Iterable[Mapping[str, np.ndarray]],
              pooling: str = "example") -> dict:
  """{'mean': [K+1, D] float32, 'tokens': real tokens, 'examples': texts, 'pooling'} over the batches."""
  if pooling not in POOLING:
    raise ValueError(f"TextEmb pooling={pooling!r}: use one of {POOLING}")
  featurizer = mean_pooling(featurizer)
  total, tokens, examples = None, 0, 0
  for batch in batches:
    mask = np.asarray(batch["input_mask"])
    count = mask.sum(axis=1).astype(np.float64)  # [B]
    pooled = featurizer.pooled(np.asarray(batch["input_ids"]), mask,  # [B, K+1, D] per text (pairs: segments)
                               batch.get("token_type_ids")).astype(np.float64)
    weight = count if pooling == "token" else np.ones_like(count)  # masked mean x count = masked sum
    summed = (pooled * weight[:, None, None]).sum(axis=0)
    total = summed if total is None else total + summed
    tokens += int(count.sum())
    examples += len(mask)
  if not tokens:
    raise ValueError("no tokens to average: the task's split has no examples")
  return {"mean": (total / (tokens if pooling == "token" else examples)).astype(np.float32), "tokens": tokens,
          "examples": examples, "pooling": pooling}


def token_mean(featurizer: featurize.Featurizer, batches: Iterable[Mapping[str, np.ndarray]]) -> dict:
  """The former TextEmb: one mean over every real token (text_mean with pooling='token')."""
  return text_mean(featurizer, batches, "token")


def task_textemb(featurizer: featurize.Featurizer, task_name: str, length: int, split: str = "train",
                 max_examples: int | None = None, cache: pathlib.Path | None = None, pooling: str = "example",
                 regime: tuple[int, int] | None = None) -> dict:
  """A registered task's TextEmb, computed once per (trunk fingerprint, task, split, length, limit, pooling)."""
  folder = (cache or featurize.cache_root()) / f"{featurizer.name}-{featurizer.fingerprint}"
  limit = "" if max_examples is None else f".n{max_examples}"
  limit += "" if regime is None else f".regime{regime[0]}s{regime[1]}"
  path = folder / f"{task_name}.{split}.L{length}{limit}.{pooling}.textemb.npz"
  if path.is_file():
    with np.load(path) as z:
      return {"mean": z["mean"], "tokens": int(z["tokens"]), "examples": int(z["examples"]), "pooling": pooling}
  with gin.unlock_config():
    gin.bind_parameter("pretrained.checkpoint", featurizer.pretrained)  # tokenize as the trunk did
  if regime is not None:
    import seqio
    from mtl_jax.taskemb import fisher
    source = ({k: v[b["weight"] > 0] for k, v in b.items()} for b in fisher.regime_batches(
        seqio.get_mixture_or_task(task_name), [task_name], length, 128, regime[0], regime[1]))
  else:
    source = featurize._examples(task_name, split, length)

  def batches():
    left = max_examples
    for batch in source:
      if left is not None:
        batch = {k: v[:left] for k, v in batch.items()}
        left -= len(batch["input_mask"])
      if len(batch["input_mask"]):
        yield batch
      if left is not None and left <= 0:
        return

  got = text_mean(featurizer, batches(), pooling)
  arrays = {k: v for k, v in got.items() if k != "pooling"}
  return featurize.write_cache(featurizer, path, arrays) | {"pooling": pooling}
