"""K seeds of one run as ONE jitted train step over a leading 'seeds' axis.

Why: a grid's seeds of one cell differ only in their seed (init, dropout, data order), so their
steps can share one compiled program: jax.vmap of `Steps._train_step` over the stacked states
(params, optimizer state, weighting state, step), the stacked batches (each seed's own stream)
and the seeds (each lane's dropout key is fold_in(key(seed), step), as in its separate run).
Each seed keeps its own TrainState outside the step (its own checkpoints, eval, results.json:
run/seeds_in_step.py), so the stack / unstack happen inside the jitted program: one dispatch,
no host copies, the input states donated. The K host batches are stacked in numpy and sent as one
array per key (K x fewer transfers and jit arguments: at d=32 those, not the math, were the step).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from mtl_jax.scale import partitioning
from mtl_jax.step.steps import with_token_types


def stack(trees: Sequence):
  """[tree] -> one tree whose leaves have a leading 'seeds' axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, n: int) -> tuple:
  """A tree with a leading 'seeds' axis of size n -> n trees."""
  return tuple(jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n))


class SeedAxisStep:
  """`steps` (a Steps of any strategy / weighting / microbatching) stepped for K seeds at once."""

  def __init__(self, steps):
    self.steps = steps
    self._compiled = {}  # lanes -> jitted step (a lane that finishes early leaves the others a smaller K)

  def _build(self, n: int):
    steps = self.steps

    def step(states, batches, seeds):
      new, metrics = jax.vmap(steps._train_step)(stack(states), batches, seeds)
      return unstack(new, n), unstack(metrics, n)

    replicated = partitioning.replicated(steps.mesh)
    return jax.jit(step, in_shardings=((steps.state_shardings,) * n, self._stacked_sharding(), replicated),
                   out_shardings=((steps.state_shardings,) * n, (replicated,) * n), donate_argnums=(0,))

  def _stacked_sharding(self) -> NamedSharding:
    """A [K, B, ...] batch: the seeds axis whole on every device, B split as a lone batch is."""
    return NamedSharding(self.steps.mesh, P(None, *self.steps.batch_sharding.spec))

  def put_batches(self, batches: Sequence[dict]) -> dict:
    """K host batches (same keys and shapes) -> one device array per key, [K, B, ...]."""
    sharding = self._stacked_sharding()
    full = [with_token_types(b) for b in batches]
    return {k: jax.make_array_from_process_local_data(sharding, np.stack([np.asarray(b[k]) for b in full]))
            for k in full[0]}

  def __call__(self, states: Sequence, batches: Sequence[dict], seeds: Sequence[int]):
    """(new states, metrics), one per seed; `batches` are host numpy batches (this process's rows)."""
    n = len(states)
    if not (n == len(batches) == len(seeds)):
      raise ValueError(f"{n} states, {len(batches)} batches and {len(seeds)} seeds: one of each per seed")
    if n not in self._compiled:
      self._compiled[n] = self._build(n)
    with jax.set_mesh(self.steps.mesh):
      return self._compiled[n](tuple(states), self.put_batches(batches), jnp.asarray(seeds, jnp.int32))
