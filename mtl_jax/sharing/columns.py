"""T task columns mixed after every layer: the shared machinery of sluice and cross-stitch.

Every column runs every example (the mixing makes each column depend on all of
them), as one batched computation: each layer is `nn.vmap`-stacked over 'tasks'
on inputs [T, B, L, D]. After layer k the T*M subspace blocks (each column's D
split into M contiguous slices of D/M) are mixed by a learned alpha_k:
    out[t, m] = sum_{s, n} alpha_k[t, m, s, n] * h[s, n]
(block index t*M + m when alpha is read as a [TM, TM] matrix; M = 1 is
cross-stitch). Each example's output is its own task's column, optionally a
learned mix over layers sum_k beta[t, k] * h_k (sluice / ELMo), then a per-task
LayerNorm. alpha and beta are plain linear weights, as in the papers (no softmax).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtl_jax.models import families
from mtl_jax.models.encoder import EncoderConfig, layer_module, param_init
from mtl_jax.sharing.towers import TaskLayerNorm, own_rows, stacked

ALPHA_INITS = ("balanced", "imbalanced")


def alpha_init(kind: str, diagonal: float = 0.9):
  """Initializer of an [n, n] (or [T, M, T, M], read as [TM, TM]) mixing matrix whose rows sum to 1:
  'balanced' every entry 1/n; 'imbalanced' `diagonal` on the diagonal, the rest spread evenly."""
  def init(rng, shape, dtype=jnp.float32):
    del rng
    n = int(np.sqrt(np.prod(shape)))
    if kind == "balanced" or n == 1:
      mat = np.full((n, n), 1.0 / n)
    else:
      mat = np.full((n, n), (1.0 - diagonal) / (n - 1))
      np.fill_diagonal(mat, diagonal)
    return jnp.asarray(mat.reshape(shape), dtype)
  return init


def beta_init(last: float = 0.9):
  """[T, K] layer weights: `last` on the final layer, the rest spread evenly (1.0 if K == 1)."""
  def init(rng, shape, dtype=jnp.float32):
    del rng
    num_layers = shape[-1]
    row = np.full(num_layers, (1.0 - last) / max(num_layers - 1, 1))
    row[-1] = last if num_layers > 1 else 1.0
    return jnp.asarray(np.broadcast_to(row, shape), dtype)
  return init


def mix_subspaces(alpha, h_TBLD, num_subspaces: int):
  """out[t, ..., m-th slice] = sum_{s,n} alpha[t, m, s, n] h[s, ..., n-th slice]; alpha [T,M,T,M] or [T*M, T*M].

  As one [TM, TM] @ [TM, B*L*D/M] matmul (block t*M + m per row): faster on CPU than the einsum.
  """
  t, b, l, d = h_TBLD.shape
  m = num_subspaces
  blocks = h_TBLD.reshape(t, b * l, m, d // m).transpose(0, 2, 1, 3).reshape(t * m, b * l * (d // m))
  out = alpha.reshape(t * m, t * m).astype(h_TBLD.dtype) @ blocks
  return out.reshape(t, m, b * l, d // m).transpose(0, 2, 1, 3).reshape(t, b, l, d)


def mix_layers(beta_BK, h_KBLD):
  """sum_k beta[b, k] h[k, b]: each example's learned mix of its column's layer outputs."""
  return jnp.einsum("bk,kbld->bld", beta_BK.astype(h_KBLD.dtype), h_KBLD)


def orthogonality(h_TBLD, mask_BL, num_subspaces: int, normalize: bool = True):
  """sum_t sum_{i<j} ||G_ti^T G_tj||_F^2, G_ti = column t's i-th subspace [real tokens, D/M].
  normalize divides by (#real tokens)^2, making it batch-size free (the uncentred cross-covariance)."""
  t, b, l, d = h_TBLD.shape
  m = num_subspaces
  g_TNMd = (h_TBLD * mask_BL[None, :, :, None].astype(h_TBLD.dtype)).reshape(t, b * l, m, d // m)
  g_TNMd = g_TNMd.astype(jnp.float32)  # tokens flattened: one plain contraction per pair (~3x faster grad)
  total = jnp.zeros((), jnp.float32)
  for i in range(m):  # pairs of subspaces (static, M is small), never tasks
    for j in range(i + 1, m):
      total = total + jnp.sum(jnp.square(jnp.einsum("tnd,tne->tde", g_TNMd[:, :, i], g_TNMd[:, :, j])))
  if normalize:
    total = total / jnp.maximum(jnp.sum(mask_BL.astype(jnp.float32)), 1.0) ** 2
  return total


class MixedColumns(nn.Module):
  """x [B, L, D] -> [B, L, D]; named after its strategy ('sluice', 'cross_stitch') so
  inspect.mixing_weights can find alpha_k / beta by path."""

  config: EncoderConfig
  num_tasks: int
  num_subspaces: int = 1
  alpha_init: str = "imbalanced"
  alpha_diagonal: float = 0.9
  beta_last: float | None = None  # None: no layer mix, the last layer is the output
  orthogonality_weight: float = 0.0
  normalize_orthogonality: bool = True

  @nn.compact
  def __call__(self, x, mask, task_id, deterministic: bool = True):
    cfg, num_tasks, m = self.config, self.num_tasks, self.num_subspaces
    if cfg.d_model % m:
      raise ValueError(f"d_model={cfg.d_model} is not divisible by num_subspaces={m}")
    alpha_axes = ("tasks", "subspaces", None, None) if m > 1 else ("tasks", None)
    alpha_shape = (num_tasks, m, num_tasks, m) if m > 1 else (num_tasks, num_tasks)
    penalize = self.orthogonality_weight > 0 and m > 1 and self.is_mutable_collection("penalties")
    if cfg.scan_layers:  # the mix after every layer is not one repeated body
      raise ValueError("EncoderConfig.scan_layers=True is not supported by sluice / cross_stitch (they mix the "
                       "columns after every layer); set EncoderConfig.scan_layers=False")
    columns = stacked(layer_module(cfg), num_tasks, "tasks")  # rematerialised per cfg.remat_policy
    h_TBLD = jnp.broadcast_to(x, (num_tasks, *x.shape))
    outs, penalty = [], jnp.zeros((), jnp.float32)
    layer_mask = families.layer_inputs(cfg, mask, x.shape[1])  # the mask (+ T5's shared bias, one for all columns)
    for k in range(cfg.num_layers):
      h_TBLD = columns(cfg, name=f"layer_{k}")(h_TBLD, layer_mask, deterministic)
      self.sow("intermediates", f"columns_{k}", h_TBLD)
      if penalize:
        penalty = penalty + orthogonality(h_TBLD, mask > 0, m, self.normalize_orthogonality)  # mask: segment ids
      alpha = self.param(f"alpha_{k}", param_init(alpha_init(self.alpha_init, self.alpha_diagonal), alpha_axes),
                         alpha_shape)
      h_TBLD = mix_subspaces(alpha, h_TBLD, m)
      self.sow("intermediates", f"mixed_{k}", h_TBLD)
      outs.append(h_TBLD)
    if penalize:
      self.sow("penalties", "orthogonality", self.orthogonality_weight * penalty)
    if self.beta_last is None:
      h_BLD = own_rows(outs[-1], task_id)
    else:
      beta_TK = self.param("beta", param_init(beta_init(self.beta_last), ("tasks", "layers")),
                           (num_tasks, cfg.num_layers))
      h_KBLD = jax.vmap(own_rows, in_axes=(0, None))(jnp.stack(outs), task_id)
      h_BLD = mix_layers(beta_TK[task_id], h_KBLD)
    self.sow("intermediates", "layer_mix", h_BLD)
    if cfg.norm == "post":  # post-LN columns end normalised, like the hard trunk (encoder.final_norm)
      return h_BLD
    return TaskLayerNorm(num_tasks, epsilon=cfg.layer_norm_eps, name="ln_final")(h_BLD, task_id)
