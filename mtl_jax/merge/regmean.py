"""RegMean (Jin et al. 2023): per linear layer, the weights minimising sum_i ||X_i W - X_i W_i||^2.

Closed form W* = (sum_i G_i)^-1 sum_i G_i W_i with G_i = X_i^T X_i the Gram matrix of layer i's inputs
(mtl_jax/merge/gram.py, on a few hundred of task i's training examples, through model i). The paper's
regularisation scales G_i's off-diagonal entries by `alpha` (FusionBench's reduce_non_diagonal_ratio, 0.9)
so the sum stays invertible. A kernel of any rank is read as [d_in, rest]: its leading axes whose sizes
multiply to the Gram's d_in are the input (query [D, H, K], attention out [H, K, D], MLP wi / wo).
Every other parameter (biases, LayerNorms, embeddings) is averaged, as in the paper."""

from __future__ import annotations

import numpy as np

from mtl_jax.merge import average, base


def as_matrix(kernel: np.ndarray, d_in: int) -> np.ndarray:
  size = 1
  for axis, n in enumerate(kernel.shape):
    size *= n
    if size == d_in:
      return kernel.reshape(d_in, -1)
  raise ValueError(f"a kernel of shape {kernel.shape} has no leading axes of size {d_in} (its Gram matrix)")


def regularised(gram: np.ndarray, alpha: float) -> np.ndarray:
  if not 0 <= alpha <= 1:
    raise ValueError(f"RegMean alpha must be in [0, 1], got {alpha!r}; 0.9 is the paper's choice")
  gram = np.asarray(gram, np.float64)
  return alpha * gram + (1 - alpha) * np.diag(np.diag(gram))


def merge_leaf(path, base_leaf, finetuned, stats, rng, alpha: float = 0.9):
  del path, base_leaf, rng
  if stats is None:
    return average.mean(finetuned)
  grams = [regularised(g, alpha) for g in stats]
  d_in = grams[0].shape[0]
  weights = [as_matrix(np.asarray(w, np.float64), d_in) for w in finetuned]
  lhs = sum(grams)
  rhs = sum(g @ w for g, w in zip(grams, weights))
  return np.linalg.solve(lhs, rhs).reshape(np.shape(finetuned[0]))


METHOD = base.register(base.Method("regmean", merge_leaf, grid={"alpha": (0.5, 0.9)}, needs="gram", uses_base=False,
                                      elementwise_stats=False))
