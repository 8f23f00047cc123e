"""Put a checkpoint's weights into the initialised params of ANY sharing strategy.

Every strategy builds its trunk from `TransformerLayer`s named `layer_{k}` (hard: one
stack; soft: towers stacked on 'tasks'; sluice / cross-stitch: columns on 'tasks';
MMoE: experts on 'experts'), so one rule serves them all: a param whose path has a
`layer_{k}/` segment takes checkpoint tensor `layer_{k}/<rest of the path>`, and the
embedder's params take `embedder/...`. Where the param has a leading stack axis the
tensor is copied onto every slice (soft: T identical towers, tie penalty 0 at step 0;
sluice / cross-stitch: T identical columns; MMoE: E experts, optionally with small
relative noise to break their symmetry). Everything else (heads, alphas, betas,
gates, a pre-LN final LayerNorm) keeps its fresh init.
"""

from __future__ import annotations

import re

import jax
import numpy as np
from flax import traverse_util

_LAYER = re.compile(r"(?:^|/)(layer_\d+/.*)$")
_POSITIONS = re.compile(r"(?:^|/)(positions/.*)$")  # a table every layer of a stack shares (T5's relative bias)


def checkpoint_key(path: str) -> str | None:
  """Our param path -> the checkpoint's flat name it loads from (None: not from the checkpoint)."""
  if path.startswith("embedder/"):
    return path
  m = _LAYER.search(path) or _POSITIONS.search(path)
  return m.group(1) if m else None


def _placed(value: np.ndarray, like: jax.Array) -> jax.Array:
  """A host array laid out like `like` (same sharding; works across processes)."""
  value = value.astype(like.dtype)
  return jax.make_array_from_callback(value.shape, like.sharding, lambda index: value[index])


def into_params(params, ckpt: dict[str, np.ndarray], expert_noise: float = 0.0, seed: int = 0,
                key_fn=checkpoint_key):
  """params (a strategy's initialised tree) with every trunk/embedder param from `ckpt`.

  key_fn: param path -> its name in `ckpt` (init_from's also maps the closing LayerNorm)."""
  flat = traverse_util.flatten_dict(params, sep="/")
  if any("/layer_scan/" in f"/{path}" for path in flat):  # stacked layers: no layer_{k}/ paths to load into
    raise ValueError("EncoderConfig.scan_layers=True stacks the layers under layer_scan/, which pretrained / "
                     "init_from checkpoints (layer_{k}/...) cannot load into; set EncoderConfig.scan_layers=False")
  rng = np.random.default_rng(seed)
  used, out = set(), {}
  for path, leaf in flat.items():
    key = key_fn(path)
    if key is None or (key.startswith("embedder/") and key not in ckpt):
      out[path] = leaf
      continue
    if key not in ckpt:
      raise ValueError(f"param {path!r} has no checkpoint tensor {key!r}: the model has more layers than "
                       "the checkpoint")
    src = ckpt[key]
    if tuple(leaf.shape) == src.shape:
      value = src
    elif tuple(leaf.shape[1:]) == src.shape:  # a stack of copies: towers, columns or experts
      value = np.broadcast_to(src, leaf.shape).copy()
      if expert_noise and "/experts/" in f"/{path}":
        scale = expert_noise * (float(src.std()) or 1.0)
        value[1:] += scale * rng.standard_normal(value[1:].shape).astype(value.dtype)
    else:
      raise ValueError(f"param {path!r} has shape {tuple(leaf.shape)}, checkpoint tensor {key!r} has {src.shape}")
    used.add(key)
    out[path] = _placed(value, leaf)
  unused = sorted(set(ckpt) - used)
  if unused:
    raise ValueError(f"{len(unused)} checkpoint tensors have no place in the model, e.g. {unused[0]!r}")
  return traverse_util.unflatten_dict(out, sep="/")

