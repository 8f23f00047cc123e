"""Per-task LoRA (Hu et al. 2021) on a shared, frozen trunk.

Each chosen projection W [D_in, D_out] of every layer (gin `targets`: query, key, value, out,
wi, wo) computes, for an example of task t,
    x (W + (alpha / r) A_t B_t)  =  x W + (alpha / r) (x A_t) B_t
with A_t [D_in, r] (normal, std 1/sqrt(D_in)) and B_t [r, D_out] (zero: step 0 is the pretrained network).
In HF's torch layout (weight [out, in]) that is W_hf + (alpha/r) B_hf A_hf with B_hf = B_t^T,
A_hf = A_t^T: mtl_jax/pretrained/lora_merge.py folds one task's update in and exports it.
Params: trunk/lora_{k}/{target}_a [T, D_in, r], {target}_b [T, r, D_out]; the low-rank product
is never materialised (grouped batches: one vmap over row groups; mixed: each example gathers
its A_t, B_t). The trunk is frozen by gin/sharing/lora.gin's param_groups.freeze.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import gin
import jax.numpy as jnp

from mtl_jax.sharing.base import SharingStrategy, register
from mtl_jax.sharing.peft_layer import PROJECTIONS, Hooks, TaskParams, check_config, check_names, run_trunk


def projection_dims(config, target: str) -> tuple[int, int]:
  """(D_in, D_out) of a projection, attention ones flattened over heads."""
  d, f, a = config.d_model, config.mlp_dim, config.num_heads * config.head_dim  # a != d: T5's d_kv
  return {"query": (d, a), "key": (d, a), "value": (d, a), "out": (a, d), "wi": (d, f), "wo": (f, d)}[target]


def lora_specs(config, targets, rank: int) -> tuple:
  specs = ()
  for t in targets:
    d_in, d_out = projection_dims(config, t)
    specs += ((f"{t}_a", (d_in, rank), (None, None), nn.initializers.normal(d_in ** -0.5)),
              (f"{t}_b", (rank, d_out), (None, None), nn.initializers.zeros))
  return specs


class _LoraHooks(Hooks):
  def __init__(self, params_T, router, targets, scale):
    self.params_T, self.router, self.targets, self.scale = params_T, router, targets, scale

  def lora(self, name, x):
    if name not in self.targets:
      return None
    dt = x.dtype
    def delta(p, rows):
      return jnp.einsum("...r,ro->...o", jnp.einsum("...i,ir->...r", rows, p[f"{name}_a"].astype(dt)),
                        p[f"{name}_b"].astype(dt)) * jnp.asarray(self.scale, dt)
    return self.router(delta, self.params_T, x)


class LoraSharing(SharingStrategy):
  rank: int = 8
  alpha: float = 16.0
  targets: Sequence[str] = ("query", "value")

  @nn.compact
  def __call__(self, x, mask, task_id, deterministic: bool = True, grouped: bool = False):
    specs = lora_specs(self.config, self.targets, self.rank)

    def hooks_for(k, router):
      params_T = TaskParams(self.num_tasks, specs, self.config.param_dtype, name=f"lora_{k}")()
      return _LoraHooks(params_T, router, self.targets, self.alpha / self.rank)

    return run_trunk(self, x, mask, task_id, deterministic, grouped, hooks_for)


@register("lora")
@gin.configurable("lora")
def lora(config, num_tasks, rank: int = 8, alpha: float = 16.0, targets: Sequence[str] = ("query", "value")):
  """rank r, alpha (the update is scaled by alpha / r) and the projections it adapts."""
  check_config(config, "lora")
  if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
    raise ValueError(f"lora.rank={rank!r} must be a positive int (e.g. 8)")
  if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
    raise ValueError(f"lora.alpha={alpha!r} must be a number > 0 (the update is scaled by alpha / rank)")
  return LoraSharing(config, num_tasks, rank=rank, alpha=float(alpha),
                     targets=check_names(targets, PROJECTIONS, "lora.targets"))
