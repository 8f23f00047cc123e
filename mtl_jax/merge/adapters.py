"""Single-task `adapters` runs: their bottleneck modules merged onto the one frozen trunk.

Why its own path: an adapter (mtl_jax/sharing/adapters.py) is not a low-rank update of a trunk kernel (LoRA's is,
sources.LoraLeaves folds it in), so it cannot be folded into a plain hard-sharing model. The merged run is an
`adapters` run of all the tasks: the frozen trunk, ONE merged adapter per layer written into every task's slice
of trunk/adapter_{k}/* ([T, ...]), and each task's own head.

The adapter's task vector is the module itself (its starting point taken as 0, the identity: with W_up = 0 an
adapter leaves the trunk unchanged whatever W_down is), as in HF PEFT's weighted-adapter merges, which also merge
LoRA factors against zero. So linear methods and TIES work entry by entry on the adapter weights; methods that
need per-model statistics of the plain model (fisher, regmean) are refused. Trunk leaves go through the same
method with the starting point as base: a frozen trunk is the starting point in every run, so it comes out as
the starting point (the method of N equal tensors).
"""

from __future__ import annotations

import re
from typing import Iterator, Mapping, Sequence

import numpy as np

_ADAPTER = re.compile(r"(?:^|/)adapter_\d+/")
METHODS = ("average", "task_arithmetic", "ties", "dare_linear", "dare_ties")


def is_adapter(path: str) -> bool:
  return bool(_ADAPTER.search(path))


def check_method(method) -> None:
  if method.needs:
    raise ValueError(f"merge method {method.name!r} needs {method.needs} statistics of a plain model; adapters "
                     f"runs merge their modules by {', '.join(METHODS)}")


class TaskSlice(Mapping):
  """A single-task adapters run's leaves with each adapter tensor's task axis dropped ([1, ...] -> [...])."""

  def __init__(self, leaves: Mapping):
    self.leaves = leaves

  def __getitem__(self, path: str) -> np.ndarray:
    value = self.leaves[path]
    return np.asarray(value)[0] if is_adapter(path) else value

  def __iter__(self) -> Iterator[str]:
    return iter(self.leaves)

  def __len__(self) -> int:
    return len(self.leaves)


def merge(method, base_flat: Mapping | None, runs_leaves: Sequence[Mapping], num_tasks: int, keys: Sequence[str],
          seed: int = 0, **hparams) -> dict[str, np.ndarray]:
  """{path: merged} of the adapters target: trunk leaves against the starting point, adapter leaves against 0,
  each merged adapter tiled over the target's `num_tasks` slices."""
  from mtl_jax.merge import base
  method = base.get(method) if isinstance(method, str) else method
  check_method(method)
  finetuned = [TaskSlice(leaves) for leaves in runs_leaves]
  trunk = [p for p in keys if not is_adapter(p)]
  adapter = [p for p in keys if is_adapter(p)]
  out = base.merge(method, base_flat, finetuned, None, seed, keys=trunk, **hparams) if trunk else {}
  zeros = {p: np.zeros_like(finetuned[0][p]) for p in adapter}
  merged = base.merge(method, zeros, finetuned, None, seed, keys=adapter, **hparams) if adapter else {}
  for path, value in merged.items():
    out[path] = np.ascontiguousarray(np.broadcast_to(value[None], (num_tasks, *value.shape)))
  return out
