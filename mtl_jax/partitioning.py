"""Mesh and t5x-style logical axis rules; current JAX (jax.jit + NamedSharding).

Parameters carry logical axis names (models/encoder.py); a rules table maps them
to the ('data', 'model') mesh. Override rules in gin, e.g. task-parallel towers:
    logical_axis_rules.overrides = [('tasks', 'model')]
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

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
def logical_axis_rules(overrides: Sequence[tuple[str, str | None]] = ()):
  """DEFAULT_RULES with `overrides` replacing rules of the same logical name."""
  over = dict(overrides)
  for name, axis in over.items():
    if axis is not None and axis not in MESH_AXES:
      raise ValueError(f"logical axis rule {name!r} -> {axis!r}: mesh axes are {MESH_AXES}")
  rules = [(n, over.pop(n)) if n in over else (n, a) for n, a in DEFAULT_RULES]
  return tuple(rules) + tuple(over.items())


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
  return jax.make_mesh(tuple(shape), MESH_AXES, axis_types=(AxisType.Auto,) * 2, devices=devices[:n])


def logical_shardings(boxed_tree, mesh, rules):
  """NamedShardings for a tree of (possibly boxed) abstract values."""
  specs = nn.get_partition_spec(boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
