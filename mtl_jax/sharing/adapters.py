"""Per-task bottleneck adapters (Houlsby et al. 2019) on a shared, frozen trunk.

In every layer, after the chosen sublayers ('attention' and / or 'mlp', gin `placement`) and
before their residual add, each example's task adapter rewrites the sublayer output h:
    A_t(h) = h + gelu(h W_down_t + b_down_t) W_up_t + b_up_t        (bottleneck `size` m << D)
W_up starts at zero, so step 0 is exactly the pretrained network. Adapter params are stacked on
'tasks' at trunk/adapter_{k}/{place}_{down,up}_{kernel,bias} ([T, D, m], [T, m], [T, m, D],
[T, D]); grouped batches run them as one vmap over row groups, mixed batches gather each
example's adapter (peft_layer.Router). The trunk (trunk/layer_{k}/...) is frozen by
gin/sharing/adapters.gin's param_groups.freeze; only adapters and heads train.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import gin
import jax.numpy as jnp

from mtl_jax.sharing.base import SharingStrategy, register
from mtl_jax.sharing.peft_layer import PLACES, Hooks, TaskParams, check_config, check_names, run_trunk

_UP_INIT = nn.initializers.zeros
_DOWN_INIT = nn.initializers.normal(0.02)


def adapter_specs(placement, d_model: int, size: int) -> tuple:
  specs = ()
  for place in placement:
    specs += ((f"{place}_down_kernel", (d_model, size), ("embed", None), _DOWN_INIT),
              (f"{place}_down_bias", (size,), (None,), nn.initializers.zeros),
              (f"{place}_up_kernel", (size, d_model), (None, "embed"), _UP_INIT),
              (f"{place}_up_bias", (d_model,), ("embed",), nn.initializers.zeros))
  return specs


def bottleneck(p: dict, place: str, h, exact_gelu: bool):
  """gelu(h W_down + b_down) W_up + b_up for ONE task's params p (h [..., D] -> [..., D])."""
  dt = h.dtype
  z = jnp.einsum("...d,dm->...m", h, p[f"{place}_down_kernel"].astype(dt)) + p[f"{place}_down_bias"].astype(dt)
  z = nn.gelu(z, approximate=not exact_gelu)
  return jnp.einsum("...m,md->...d", z, p[f"{place}_up_kernel"].astype(dt)) + p[f"{place}_up_bias"].astype(dt)


class _AdapterHooks(Hooks):
  def __init__(self, params_T, router, placement, exact_gelu):
    self.params_T, self.router, self.placement, self.exact_gelu = params_T, router, placement, exact_gelu

  def adapt(self, place, h):
    if place not in self.placement:
      return h
    return h + self.router(lambda p, rows: bottleneck(p, place, rows, self.exact_gelu), self.params_T, h)


class AdapterSharing(SharingStrategy):
  size: int = 64
  placement: Sequence[str] = PLACES

  @nn.compact
  def __call__(self, x, mask, task_id, deterministic: bool = True, grouped: bool = False):
    cfg = self.config
    specs = adapter_specs(self.placement, cfg.d_model, self.size)

    def hooks_for(k, router):
      params_T = TaskParams(self.num_tasks, specs, cfg.param_dtype, name=f"adapter_{k}")()
      return _AdapterHooks(params_T, router, self.placement, cfg.gelu_exact)

    return run_trunk(self, x, mask, task_id, deterministic, grouped, hooks_for)


def check_size(size, where: str) -> int:
  if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
    raise ValueError(f"{where}={size!r} must be a positive int (the bottleneck width, e.g. 64)")
  return size


@register("adapters")
@gin.configurable("adapters")
def adapters(config, num_tasks, size: int = 64, placement: Sequence[str] = PLACES):
  """size: bottleneck width m; placement: sublayers followed by an adapter ('attention', 'mlp')."""
  check_config(config, "adapters")
  return AdapterSharing(config, num_tasks, size=check_size(size, "adapters.size"),
                        placement=check_names(placement, PLACES, "adapters.placement"))
