"""Mesh and t5x-style logical axis rules; current JAX (jax.jit + NamedSharding).

Parameters carry logical axis names (models/encoder.py); a rules table maps them
to the ('data', 'model') mesh. Override rules in gin, e.g. task-parallel towers:
    logical_axis_rules.overrides = [('tasks', 'model')]
(ready-made: gin/meshes/{data_parallel,model_parallel_2,task_parallel}.gin).

The same rules drive activation constraints (`nn.with_logical_constraint` in the
model): steps.Steps traces the model under `nn.logical_axis_rules(rules)` and runs
it under `jax.set_mesh(mesh)`; without both, flax makes those constraints no-ops.

A parameter dimension that its mesh axis does not divide (e.g. 3 tasks on a
'model' axis of 2, or an odd vocabulary) is not split on it, with a warning (jax.jit
cannot place uneven shards); the axis goes to the next rule that fits.

FSDP (gin/meshes/fsdp.gin): overrides [('batch', 'data'), ('embed', 'data')] split every
parameter's d_model dimension (and so its Adam moments) over 'data'; 'batch' comes first
so activations keep their batch split and their 'embed' dimension whole.
`per_device_bytes` reads what one device actually holds from the arrays' shardings.

Multi-host: the 'data' axis must be split across processes (every process feeds
different rows), so `make_mesh` checks that no 'data' index spans two processes.
"""

from __future__ import annotations

import logging
from typing import Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

log = logging.getLogger("mtl_jax")

MESH_AXES = ("data", "model")

DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("embed", None),
    ("length", None),
    ("tasks", None),
    ("classes", None),
    ("layers", None),
    ("experts", None),
    ("subspaces", None),
)


@gin.configurable
def logical_axis_rules(overrides: Sequence[tuple[str, str | Sequence[str] | None]] = ()):
  """`overrides` first, then DEFAULT_RULES for every logical name they do not mention.

  Order is precedence (flax): within one parameter, a mesh axis goes to the first
  rule that claims it. Overrides come first, so ('tasks', 'model') puts a tower
  stack's task axis on 'model' ahead of the 'mlp'/'heads' dims inside each tower
  (those then stay whole on their device). A logical name may map to None, a mesh
  axis, or a tuple of mesh axes; repeat a name for fallbacks, t5x style.
  """
  over = []
  for rule in overrides:
    if not isinstance(rule, (tuple, list)) or len(rule) != 2 or not isinstance(rule[0], str):
      raise ValueError(f"logical axis rule {rule!r} must be a (logical_name, mesh_axis_or_None) pair")
    name, axis = rule
    if isinstance(axis, (tuple, list)):
      axis = tuple(axis)
    for a in (axis if isinstance(axis, tuple) else (axis,)):
      if a is not None and a not in MESH_AXES:
        raise ValueError(f"logical axis rule {name!r} -> {axis!r}: mesh axes are {MESH_AXES}")
    over.append((name, axis))
  named = {n for n, _ in over}
  return tuple(over) + tuple((n, a) for n, a in DEFAULT_RULES if n not in named)


@gin.configurable
def make_mesh(mesh_shape: Sequence[int] = (-1, 1), devices=None) -> jax.sharding.Mesh:
  """A ('data', 'model') mesh; one -1 entry takes the remaining devices."""
  devices = list(jax.devices() if devices is None else devices)
  shape = list(mesh_shape)
  if len(shape) != 2 or shape.count(-1) > 1:
    raise ValueError(f"mesh_shape must be (data, model) with at most one -1, got {tuple(mesh_shape)}")
  if -1 in shape:
    known = int(np.prod([s for s in shape if s != -1]))
    if known <= 0 or len(devices) % known:
      raise ValueError(f"mesh_shape {tuple(mesh_shape)} does not divide the {len(devices)} devices")
    shape[shape.index(-1)] = len(devices) // known
  if int(np.prod(shape)) > len(devices) or min(shape) <= 0:
    raise ValueError(f"mesh_shape {tuple(shape)} needs {int(np.prod(shape))} devices but "
                     f"{len(devices)} are available; use a smaller make_mesh.mesh_shape")
  n = int(np.prod(shape))
  if n < len(devices) and len({d.process_index for d in devices}) > 1:
    raise ValueError(f"mesh_shape {tuple(shape)} uses {n} of the {len(devices)} devices of a multi-process "
                     "run; every device must be in the mesh (use -1 for one entry)")
  mesh = jax.make_mesh(tuple(shape), MESH_AXES, axis_types=(AxisType.Auto,) * 2, devices=devices[:n])
  check_data_axis_spans_processes(mesh)
  return mesh


def check_data_axis_spans_processes(mesh) -> None:
  """Each process feeds its own rows, so each 'data' index must live on exactly one process."""
  check_process_grid(np.vectorize(lambda d: d.process_index)(mesh.devices), dict(mesh.shape))


def check_process_grid(procs, shape=None) -> None:
  """`procs[i, j]`: process of the device at ('data' i, 'model' j). Raises if a data row spans processes."""
  procs = np.asarray(procs)
  num = len(np.unique(procs))
  if num <= 1:
    return
  shared = [i for i in range(procs.shape[0]) if len(set(procs[i].tolist())) > 1]
  if shared:
    raise ValueError(f"mesh {shape or procs.shape} puts 'data' row(s) {shared[:4]} on several of the {num} "
                     f"processes, but each process feeds its own rows: make the 'data' axis a multiple of "
                     f"the process count ({num}) and 'model' at most the devices per process "
                     f"({procs.size // num})")


def _axis_size(mesh, axes) -> int:
  axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
  return int(np.prod([mesh.shape[a] for a in axes])) if axes else 1


def logical_to_spec(names, shape, rules, mesh, skipped: dict | None = None) -> P:
  """flax's rule resolution (rules in order of precedence, each mesh axis used once
  per array) plus one condition: a mesh axis is only given to a dimension it divides.
  A rule that fails it is skipped, so the axis falls to the next rule that fits (3
  tasks on a 'model' axis of 2: the tower's 'mlp' dimension gets 'model' instead).
  `skipped[(name, size, axes)]` counts the arrays where that happened."""
  names = tuple(names) + (None,) * (len(shape) - len(names))
  result: list = [None] * len(shape)
  used: set = set()
  for name, axes in rules:
    if name not in names or axes is None:
      continue
    pos = names.index(name)
    wanted = set((axes,) if isinstance(axes, str) else axes)
    if result[pos] is not None or used & wanted:
      continue
    if shape[pos] % _axis_size(mesh, axes):
      if skipped is not None:
        key = (name, shape[pos], axes)
        skipped[key] = skipped.get(key, 0) + 1
      continue
    result[pos] = axes
    used |= wanted
  return P(*result)


def logical_shardings(boxed_tree, mesh, rules):
  """NamedShardings for a tree of (possibly boxed) abstract values, by `rules`.

  A dimension its mesh axis does not divide is not split on it (jax.jit cannot
  place uneven shards); the axis goes to the next rule that fits, and a warning
  names what was left unsplit.
  """
  names_tree = nn.get_partition_spec(boxed_tree)
  values = nn.meta.unbox(boxed_tree)
  skipped: dict = {}
  specs = jax.tree.map(lambda names, x: logical_to_spec(tuple(names), x.shape, rules, mesh, skipped),
                       names_tree, values, is_leaf=lambda x: isinstance(x, P))
  for (name, size, axes), count in skipped.items():
    log.warning("logical axis %r (size %d) is not divisible by mesh axis %r (%d devices): not split on it "
                "in %d array(s); pick sizes divisible by the mesh axis or change make_mesh.mesh_shape",
                name, size, axes, _axis_size(mesh, axes), count)
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs, is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def per_device_bytes(tree, device=None) -> int:
  """Bytes of `tree`'s arrays that live on `device` (default: the first device of each array)."""
  total = 0
  for x in jax.tree.leaves(tree):
    shards = [s for s in x.addressable_shards if device is None or s.device == device]
    total += shards[0].data.nbytes if shards else 0
  return total
