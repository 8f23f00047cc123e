"""K seeds of one run as ONE jitted train step over a leading 'seeds' axis.

Why: a grid's seeds of one cell differ only in their seed (init, dropout, data order), so their
steps can share one compiled program: jax.vmap of `Steps._train_step` over the stacked states
(params, optimizer state, weighting state, step), the stacked batches (each seed's own stream)
and the seeds (each lane's dropout key is fold_in(key(seed), step), as in its separate run).
Each seed keeps its own TrainState outside the step (its own checkpoints, eval, results.json:
run/seeds_in_step.py), so the stack / unstack happen inside the jitted program: one dispatch,
no host copies, the input states donated.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from mtl_jax.scale import partitioning


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
      new, metrics = jax.vmap(steps._train_step)(stack(states), stack(batches), seeds)
      return unstack(new, n), unstack(metrics, n)

    replicated = partitioning.replicated(steps.mesh)
    return jax.jit(step, in_shardings=((steps.state_shardings,) * n, (steps.batch_sharding,) * n, replicated),
                   out_shardings=((steps.state_shardings,) * n, (replicated,) * n), donate_argnums=(0,))

  def __call__(self, states: Sequence, batches: Sequence[dict], seeds: Sequence[int]):
    """(new states, metrics), one per seed; `batches` are host numpy batches (this process's rows)."""
    n = len(states)
    if not (n == len(batches) == len(seeds)):
      raise ValueError(f"{n} states, {len(batches)} batches and {len(seeds)} seeds: one of each per seed")
    if n not in self._compiled:
      self._compiled[n] = self._build(n)
    with jax.set_mesh(self.steps.mesh):
      placed = tuple(self.steps.put_batch(b) for b in batches)
      return self._compiled[n](tuple(states), placed, jnp.asarray(seeds, jnp.int32))
