"""The one interface every merge method implements, and the leaf-by-leaf driver over flat dicts.

Why leaf by leaf: a weight-space merge of N fine-tuned models never needs more than one tensor of each
at a time, so `merge` reads `base[path]` and `finetuned[i][path]` for one path, writes the merged tensor
and drops the rest. The mappings may be lazy (`sources.RunLeaves` restores one tensor from a checkpoint
on access), so at most the merged model plus one leaf per source is held (plus the base, when it is not lazy).

A method is `merge_leaf(path, base, finetuned, stats, rng, **hparams) -> merged` on numpy arrays:
base the shared starting point's tensor, finetuned [N] tensors of the same shape, stats [N] per-source
statistics of that tensor (diagonal Fisher, Gram matrix of a linear layer's inputs) or None.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Mapping, Sequence

import numpy as np

from mtl_jax.registry import Registry

METHODS = Registry("merge method", "gin/merge")


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  merge_leaf: Callable[..., np.ndarray]
  grid: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)  # validation grid of hparams
  needs: str | None = None    # per-source statistics: None, 'fisher' or 'gram'
  uses_base: bool = True      # False: the starting point is not read (simple average)
  # per-tensor quantities (TIES' trim thresholds, majority sign) from a first pass over the row blocks,
  # passed to merge_leaf as keyword arguments: prepare(path, base, finetuned, seed, blocks, **hparams)
  prepare: Callable[..., dict] | None = None
  elementwise_stats: bool = True  # stats have the tensor's shape (Fisher), so row blocks slice them too


def register(method: Method) -> Method:
  METHODS.register(method.name)(lambda: method)
  return method


def get(name: str) -> Method:
  return METHODS.get(name)()  # every method file registered itself: the package imports them (merge/__init__.py)


def names() -> tuple[str, ...]:
  return METHODS.names()


def leaf_rng(seed: int, path: str) -> np.random.Generator:
  """A generator fixed by (seed, path): a merge is reproducible and independent of the leaf order."""
  digest = hashlib.sha256(f"{seed}:{path}".encode()).digest()
  return np.random.default_rng(int.from_bytes(digest[:8], "little"))


CHUNK = 1 << 20  # entries per row block: a merge's float64 temporaries stay this small whatever the tensor


def blocks(shape, chunk: int = CHUNK) -> list:
  """Row blocks (slices of axis 0) of about `chunk` entries; one block for small tensors and scalars."""
  size = int(np.prod(shape)) if shape else 1
  if not shape or size <= chunk or shape[0] < 2:
    return [slice(None)]
  rows = max(1, chunk // max(1, size // shape[0]))
  return [slice(i, min(i + rows, shape[0])) for i in range(0, shape[0], rows)]


def block_rng(seed: int, path: str, index: int, count: int) -> np.random.Generator:
  """Block `index`'s generator (the leaf's own when the tensor is one block)."""
  return leaf_rng(seed, path if count == 1 else f"{path}#{index}")


def task_vectors(base: np.ndarray, finetuned: Sequence[np.ndarray]) -> np.ndarray:
  """[N, ...] theta_i - theta_0 (Ilharco et al. 2023), in float64 for exact references."""
  return np.stack([np.asarray(f, np.float64) - np.asarray(base, np.float64) for f in finetuned])


def merge(method: str | Method, base: Mapping[str, np.ndarray] | None, finetuned: Sequence[Mapping[str, np.ndarray]],
          stats: Sequence[Mapping[str, np.ndarray]] | None = None, seed: int = 0, keys: Sequence[str] | None = None,
          chunk: int = CHUNK, **hparams) -> dict[str, np.ndarray]:
  """{path: merged tensor} for every path of `keys` (default: the first model's), one leaf at a time, each
  in row blocks of about `chunk` entries (an embedding table is half of MiniLM: its float64 temporaries
  would otherwise cost several models).

  `stats[i][path]` (when the method needs them) may be missing for a path: that leaf falls back to the
  simple average (RegMean's non-linear params, Fisher-free leaves)."""
  method = get(method) if isinstance(method, str) else method
  if not finetuned:
    raise ValueError("merge needs at least one fine-tuned model")
  if method.needs and stats is None:
    raise ValueError(f"merge method {method.name!r} needs per-model {method.needs} statistics")
  unknown = sorted(set(hparams) - set(method.grid))
  if unknown:
    raise ValueError(f"merge method {method.name!r} has no hyperparameter {unknown[0]!r}; "
                     f"it takes {', '.join(method.grid) or 'none'}")
  out = {}
  for path in (keys if keys is not None else list(finetuned[0])):
    leaves = [np.asarray(f[path]) for f in finetuned]
    dtype = leaves[0].dtype
    b = np.asarray(base[path]) if method.uses_base and base is not None else None
    s = None
    if method.needs:
      s = [m.get(path) for m in stats]
      s = None if any(x is None for x in s) else s
    parts = blocks(leaves[0].shape, chunk) if s is None or method.elementwise_stats else [slice(None)]
    extra = method.prepare(path, b, leaves, seed, parts, **hparams) if method.prepare else {}
    merged = np.empty(leaves[0].shape, dtype)
    for i, part in enumerate(parts):  # float64 work on one row block at a time
      merged[part] = method.merge_leaf(path, None if b is None else b[part], [x[part] for x in leaves],
                                       s if s is None or not method.elementwise_stats else [x[part] for x in s],
                                       block_rng(seed, path, i, len(parts)), **extra, **hparams)
    out[path] = merged
  return out
