"""Frozen featurizers: a trunk (pretrained checkpoint, or any run's MODEL_DIR) -> pooled features
of every layer for a task's split, cached on disk.

Features are [N, K+1, D] float32: the pooled embedding output and the pooled output of each of the
K layers (the last one after the closing LayerNorm of a pre-LN trunk), pooled as the trunk pools
(masked mean, or [CLS]). The last slot is what a head sees; all slots feed the optional scalar mix.
Inputs are tokenised by the tasks' own seqio pipeline (the evaluation path: every example, in
order), with the trunk's tokenizer when it came from a pretrained checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtl_jax.input import input_pipeline, task_info
from mtl_jax.data import fetch
from mtl_jax.pretrained import settings as _settings  # noqa: F401  registers gin `pretrained.*`
from mtl_jax.models import choice_pairs
from mtl_jax.models.encoder import EncoderConfig, Embedder, LayerStack, final_norm
from mtl_jax.transfer import init_from

KINDS = ("classification", "regression")


class LayerFeatures(nn.Module):
  """Embedder + layer stack; every layer's pooled output [B, K+1, D] (tokens: the last layer's
  token states [B, L, D], for the per-token probes of probe/token_heads.py)."""

  config: EncoderConfig
  tokens: bool = False

  @nn.compact
  def __call__(self, input_ids, mask, token_type_ids=None, tags=None):
    positions = None
    if tags is not None:  # multiple choice, per-pair layout: each pair alone (models/choice_pairs.py)
      mask, positions = choice_pairs.trunk_inputs(mask, tags)
    x = Embedder(self.config, name="embedder")(input_ids, True, token_type_ids, positions)  # a pair's segments
    layers = LayerStack(self.config, name="stack")(x, mask, True)
    layers = layers.at[-1].set(final_norm(self.config)(layers[-1]))
    if self.tokens:
      return layers[-1].astype(jnp.float32)
    states = jnp.concatenate([x[None], layers])  # [K+1, B, L, D]
    if self.config.pooling == "cls":
      pooled = states[:, :, 0]
    else:
      m = mask[None, :, :, None].astype(states.dtype)
      pooled = (states * m).sum(2) / jnp.maximum(m.sum(2), 1.0)
    return jnp.swapaxes(pooled, 0, 1).astype(jnp.float32)


@dataclasses.dataclass
class Featurizer:
  """A named frozen trunk: its architecture, weights (plain encoder names) and tokenizer source."""
  name: str
  config: EncoderConfig
  weights: dict
  pretrained: str | None  # the checkpoint whose tokenizer the tasks must use (None: the tasks' own)
  describe: str

  @functools.cached_property
  def fingerprint(self) -> str:
    return init_from.fingerprint(self.weights)[:16]

  @functools.cached_property
  def params(self):
    model = LayerFeatures(self.config)
    dummy = jnp.zeros((1, 4), jnp.int32)
    fresh = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), dummy, jnp.ones_like(dummy))["params"])
    return init_from.into_params(fresh, self.weights)

  @functools.cached_property
  def _apply(self):
    model = LayerFeatures(self.config)
    return jax.jit(lambda params, ids, mask, types: model.apply({"params": params}, ids, mask, types))

  @functools.cached_property
  def _apply_tokens(self):
    model = LayerFeatures(self.config, tokens=True)
    return jax.jit(lambda params, ids, mask, types, tags: model.apply({"params": params}, ids, mask, types, tags))

  def pooled(self, input_ids: np.ndarray, mask: np.ndarray, token_type_ids=None) -> np.ndarray:
    return np.asarray(self._apply(self.params, input_ids, mask, token_type_ids))

  def token_states(self, input_ids: np.ndarray, mask: np.ndarray, token_type_ids=None, tags=None) -> np.ndarray:
    """[B, L, D] last-layer states (after a pre-LN trunk's closing LayerNorm); tags: a multiple-choice
    row's, so each (context, choice) pair is encoded on its own as in training."""
    return np.asarray(self._apply_tokens(self.params, input_ids, mask, token_type_ids, tags))


def from_checkpoint(name: str, checkpoint: str) -> Featurizer:
  from mtl_jax.pretrained import checkpoint as checkpoint_lib, store
  ckpt = checkpoint_lib.open_checkpoint(store.resolve(checkpoint))
  return Featurizer(name, ckpt.encoder_config(dropout_rate=0.0), ckpt.params(), checkpoint,
                    f"pretrained checkpoint {ckpt.path}")


def from_model_dir(name: str, model_dir: str, task=None, step="latest") -> Featurizer:
  """A run's trunk (one task's tower / column, an expert, or 'mean' for per-task strategies)."""
  path = pathlib.Path(model_dir).absolute()
  spec = init_from.read_spec(path)
  params, saved = init_from.restore_params(path, step)
  weights = init_from.plain_encoder(params, spec, task)
  config = dataclasses.replace(init_from.encoder_config(spec), dropout_rate=0.0)
  pretrained = (spec.get("pretrained") or {}).get("checkpoint")
  which = f", trunk {task}" if task is not None else ""
  return Featurizer(name, config, weights, pretrained, f"run {path} ({spec['sharing']}, step {saved}{which})")


def parse(text: str) -> Featurizer:
  """'NAME=CHECKPOINT' | 'NAME=run:MODEL_DIR[:TASK]' (TASK: a task name, an expert index or 'mean')."""
  if "=" not in text:
    raise ValueError(f"--featurizer {text!r}: use NAME=CHECKPOINT (e.g. minilm=all-MiniLM-L6-v2) "
                     "or NAME=run:MODEL_DIR[:TASK]")
  name, target = text.split("=", 1)
  if target.startswith("run:"):
    parts = target[4:].split(":")
    task = parts[1] if len(parts) > 1 else None
    task = int(task) if task is not None and task.isdigit() else task
    return from_model_dir(name, parts[0], task)
  return from_checkpoint(name, target)


def cache_root() -> pathlib.Path:
  return fetch.cache_dir() / "probe_features"


def _examples(task_name: str, split: str, length: int, batch_size: int = 128):
  import seqio
  task = seqio.get_mixture_or_task(task_name)
  for batch in input_pipeline.eval_batches(task, [task_name], {"inputs": length}, batch_size, split):
    keep = batch["weight"] > 0
    yield {k: v[keep] for k, v in batch.items()}


def features(featurizer: Featurizer, task_name: str, split: str, length: int,
             cache: pathlib.Path | None = None) -> dict[str, np.ndarray]:
  """{'x': [N, K+1, D], 'y': labels [N] (int) or scores [N] (float)}, computed once and cached
  (QA / multiple choice: per-token states and targets, probe/token_heads.py)."""
  from mtl_jax.probe import token_heads
  info = task_info.get(task_name)
  if info.kind not in KINDS + tuple(token_heads.KINDS):
    raise ValueError(f"task {task_name!r} is {info.kind}: probes fit one label per text "
                     f"({' / '.join(KINDS)} tasks) or a linear QA / multiple-choice token head")
  cache = (cache or cache_root()) / f"{featurizer.name}-{featurizer.fingerprint}"
  path = cache / f"{task_name}.{split}.L{length}.npz"
  if path.is_file():
    with np.load(path) as z:
      return {k: z[k] for k in z.files}
  with gin.unlock_config():
    gin.bind_parameter("pretrained.checkpoint", featurizer.pretrained)  # the tasks tokenize as the trunk did
  if info.kind in token_heads.KINDS:
    data = token_heads.rows(featurizer, _examples(task_name, split, length))
    if not len(data["y"]):
      raise ValueError(f"task {task_name!r} has no {split!r} examples")
    return write_cache(featurizer, path, data)
  xs, ys = [], []
  for batch in _examples(task_name, split, length):
    xs.append(featurizer.pooled(batch["input_ids"], batch["input_mask"], batch.get("token_type_ids")))
    ys.append(batch["label"] if info.kind == "classification" else batch["score"])
  if not xs:
    raise ValueError(f"task {task_name!r} has no {split!r} examples")
  return write_cache(featurizer, path, {"x": np.concatenate(xs), "y": np.concatenate(ys)})


def write_cache(featurizer, path, arrays: dict) -> dict:
  """Writes `arrays` to the .npz `path` atomically, with featurizer.json (which weights made them) beside it."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp.npz")
  np.savez(tmp, **arrays)
  tmp.replace(path)
  (path.parent / "featurizer.json").write_text(json.dumps(
      {"name": featurizer.name, "describe": featurizer.describe, "fingerprint": featurizer.fingerprint}, indent=1))
  return arrays


