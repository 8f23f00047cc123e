"""Fisher merging (Matena & Raffel 2022): theta = sum_i F_i theta_i / sum_i F_i, entry by entry.

F_i is model i's diagonal Fisher on its own task's training examples, computed by mtl_jax/taskemb/fisher.py
(per-example gradients, one jax.vmap of jax.grad; the empirical Fisher with the gold labels by default, or
'sampled' labels from the model). F is floored at `floor` (the paper's fisher_floor, 1e-6) so an entry
no model is sensitive to gets the plain average. Leaves without a Fisher (heads) are averaged."""

from __future__ import annotations

import numpy as np

from mtl_jax.merge import average, base

FLOOR = 1e-6


def merge_leaf(path, base_leaf, finetuned, stats, rng):
  del path, base_leaf, rng
  if stats is None:
    return average.mean(finetuned)
  f = np.maximum(np.stack([np.asarray(s, np.float64) for s in stats]), FLOOR)
  thetas = np.stack([np.asarray(t, np.float64) for t in finetuned])
  return (f * thetas).sum(0) / f.sum(0)


def statistics(model, kinds, task_index: int, params, batches, labels: str = "labels", seed: int = 0) -> dict:
  """{param path: diagonal Fisher} of every embedder + trunk tensor of one fine-tuned model."""
  from mtl_jax.taskemb import fisher as taskemb_fisher
  spec = taskemb_fisher.FisherSpec(model, kinds, params="all", activations=False, labels=labels,
                                   statistic="sequence", classifier=False, task_index=task_index)
  return taskemb_fisher.diagonal_fisher(spec, params, batches, seed)["params"]


METHOD = base.register(base.Method("fisher", merge_leaf, grid={}, needs="fisher", uses_base=False))
