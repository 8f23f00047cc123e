"""Soft (L2-tied) parameter sharing: one tower per task, pulled together by a penalty.

Each task has its own copy of the trunk (`towers.Tower`: K layers + final LN).
Parameters whose path inside the tower matches a `tied` regex are stored once per
task, stacked on a leading 'tasks' axis, and tied by
    'mean':      weight * sum_t ||theta_t - mean_t theta||^2
    'pairwise':  weight * sum_{s<t} ||theta_s - theta_t||^2   (= T x the mean form)
summed over the tied leaves. Every other parameter is shared outright (one copy).

Routing (a batch must cost about one tower, not T):
    grouped batches (the 'grouped' layout, `grouped=True`: B/T rows of every task)
              rows are sorted by task into [T, B/T] and the stacked towers run as one
              vmap over the tasks axis, each on its own rows: exactly one tower of
              FLOPs per example and no weight copies. Used whatever `routing` says.
    'gather'  mixed batches: each example gathers its task's tied weights (a [B, ...]
              copy) and the tower runs once per example under jax.vmap: ~1 tower of
              FLOPs per example, plus moving B weight copies. (jax.lax.ragged_dot
              lowers to a dense masked dot over all T groups on CPU, i.e. T x the
              FLOPs, so it is not used.)
    'dense'   every tower runs on the whole batch and each example keeps its own
              task's output: T x the cost; a reference for tests and benchmarks.
"""

from __future__ import annotations

import re
from typing import Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
from flax import traverse_util

from mtl_jax.sharing.base import SharingStrategy, register
from mtl_jax.sharing.towers import Tower

PENALTIES = ("mean", "pairwise")
ROUTINGS = ("gather", "dense")


def tie_penalty(tied_params, kind: str = "mean") -> jax.Array:
  """Sum over leaves [T, ...] of sum_t ||theta_t - mean||^2; 'pairwise' = T x that
  (sum_{s<t} ||a_s - a_t||^2 = T sum_t ||a_t - mean a||^2), no T^2 memory."""
  total = jnp.zeros((), jnp.float32)
  num_tasks = 1
  for w in jax.tree.leaves(tied_params):
    w = w.astype(jnp.float32)
    num_tasks = w.shape[0]
    # The mean's own gradient term is -2/T sum_t (theta_t - mean) = 0: stop_gradient skips
    # computing that zero (a reduction over T per leaf); the gradient stays exact.
    total = total + jnp.sum(jnp.square(w - jax.lax.stop_gradient(w.mean(0, keepdims=True))))
  return total * num_tasks if kind == "pairwise" else total


def _split(flat: dict, is_tied) -> tuple[dict, dict]:
  tied = {p: v for p, v in flat.items() if is_tied(p)}
  return tied, {p: v for p, v in flat.items() if not is_tied(p)}


def _add_tasks_axis(box):
  return box.add_axis(0, {nn.PARTITION_NAME: "tasks"}) if isinstance(box, nn.meta.AxisMetadata) else box


class SoftSharing(SharingStrategy):
  weight: float = 1e-2
  penalty: str = "mean"
  tied: Sequence[str] = (r"^layers/",)
  same_init: bool = True
  routing: str = "gather"

  @nn.compact
  def __call__(self, x, mask, task_id, deterministic: bool = True, grouped: bool = False):
    tower, num_tasks = Tower(self.config, parent=None), self.num_tasks  # unbound: applied functionally

    def init_flat(rng):  # one tower's boxed params, flattened to 'a/b/c' paths
      return traverse_util.flatten_dict(tower.init(rng, x[:1], mask[:1])["params"], sep="/")

    paths = list(jax.eval_shape(init_flat, jax.random.key(0)))
    is_tied = lambda p: any(re.search(pat, p) for pat in self.tied)
    for pat in self.tied:
      if not any(re.search(pat, p) for p in paths):
        raise ValueError(f"soft_sharing.tied pattern {pat!r} matches no tower parameter; paths look like "
                         f"{paths[0]!r}")

    def init_tied(rng):
      keys = jax.random.split(rng, num_tasks)
      one = lambda k: _split(init_flat(rng if self.same_init else k), is_tied)[0]
      flat = jax.tree.map(_add_tasks_axis, jax.vmap(one)(keys), is_leaf=lambda b: isinstance(b, nn.meta.AxisMetadata))
      return traverse_util.unflatten_dict(flat, sep="/")

    init_shared = lambda rng: traverse_util.unflatten_dict(_split(init_flat(rng), is_tied)[1], sep="/")
    any_tied, any_shared = any(map(is_tied, paths)), not all(map(is_tied, paths))
    tied = self.param("tied", init_tied) if any_tied else {}
    shared_flat = traverse_util.flatten_dict(self.param("shared", init_shared), sep="/") if any_shared else {}

    def run(tied_params, x, mask, rng):
      params = traverse_util.unflatten_dict({**shared_flat, **traverse_util.flatten_dict(tied_params, sep="/")},
                                            sep="/")
      return tower.apply({"params": params}, x, mask, deterministic,
                         rngs=None if rng is None else {"dropout": rng})

    rng = None if deterministic else self.make_rng("dropout")
    if not any_tied:
      return run({}, x, mask, rng)
    if self.is_mutable_collection("penalties"):
      self.sow("penalties", "soft_tie", self.weight * tie_penalty(tied, self.penalty))
    if grouped and self.routing != "dense":
      return _run_grouped(run, tied, x, mask, task_id, num_tasks, rng)
    if self.routing == "dense":
      rngs = None if rng is None else jax.random.split(rng, num_tasks)
      h_TBLD = jax.vmap(lambda p, r: run(p, x, mask, r))(tied, rngs)
      return h_TBLD[task_id, jnp.arange(x.shape[0])]
    tied_B = jax.tree.map(lambda w: w[task_id], tied)  # getitem clamps; jnp.take's default "fill" is ~3x slower
    rngs = None if rng is None else jax.random.split(rng, x.shape[0])
    one = lambda p, xb, mb, r: run(p, xb[None], mb[None], r)[0]
    # Inside, each example is a batch of 1: its 'batch' constraint would pin that size-1
    # axis to the data mesh axis, so 'batch' goes to the vmapped example axis instead
    # (and no other name may take that axis inside: FSDP's ('embed', 'data')).
    rules = tuple(nn.get_logical_axis_rules() or ())
    batch_axis = dict(rules).get("batch")
    with nn.logical_axis_rules(tuple((n, None if n == "batch" or a == batch_axis else a) for n, a in rules)):
      return jax.vmap(one, spmd_axis_name=batch_axis)(tied_B, x, mask, rngs)


def _run_grouped(run, tied, x, mask, task_id, num_tasks: int, rng):
  """Every task has B/T rows (any order): sort them into [T, B/T] and run tower t on
  row group t, one vmap over the stacked weights; then put the rows back in place."""
  batch = x.shape[0]
  if batch % num_tasks:
    raise ValueError(f"grouped soft sharing: batch {batch} is not divisible by {num_tasks} tasks")
  order = jnp.argsort(task_id, stable=True)  # task-major; the identity for one process's grouped batch
  split = lambda a: a[order].reshape((num_tasks, batch // num_tasks) + a.shape[1:])
  rngs = None if rng is None else jax.random.split(rng, num_tasks)
  h_TbLD = jax.vmap(run)(tied, split(x), split(mask), rngs)
  return h_TbLD.reshape(x.shape)[jnp.argsort(order)]  # a gather back (cheaper than a scatter)


@register("soft")
@gin.configurable("soft_sharing")
def soft(config, num_tasks, weight: float = 1e-2, penalty: str = "mean", tied: Sequence[str] = (r"^layers/",),
         same_init: bool = True, routing: str = "gather"):
  """weight: lambda; tied: regexes over tower param paths ('layers/layer_0/mlp/wi/kernel',
  'ln_final/LayerNorm_0/scale'); same_init: towers start identical (penalty starts at 0)."""
  if penalty not in PENALTIES:
    raise ValueError(f"soft_sharing.penalty must be one of {PENALTIES}, got {penalty!r}")
  if routing not in ROUTINGS:
    raise ValueError(f"soft_sharing.routing must be one of {ROUTINGS}, got {routing!r}")
  if not weight >= 0:
    raise ValueError(f"soft_sharing.weight must be >= 0, got {weight!r}")
  tied = (tied,) if isinstance(tied, str) else tuple(tied)
  for pat in tied:
    re.compile(pat)
  return SoftSharing(config, num_tasks, weight=float(weight), penalty=penalty, tied=tied,
                     same_init=bool(same_init), routing=routing)
