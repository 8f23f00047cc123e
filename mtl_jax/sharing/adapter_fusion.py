"""AdapterFusion (Pfeiffer et al. 2021): each task attends over ALL tasks' adapters.

At each fused sublayer output h (gin `placement`, default 'mlp' as in Pfeiffer's adapters), the
T task adapters all run (z_s = h + bottleneck_s(h), adapters.py, stacked [T, ...]) and the
example's task t mixes them with its own fusion attention:
    q = h Q_t,  k_s = z_s K_t,  v_s = z_s V_t
    a_ts = softmax_s(q . k_s / sqrt(D) + prior_ts),   out = sum_s a_ts v_s
V_t starts at the identity and Q_t, K_t near zero, so step 0 averages the adapters. `prior`
[T, T] per layer (init 0) is the input-independent part of the attention: row t = how much
task t reads each task's adapter; its softmax goes to mixing_weights.json as
'adapter_fusion/alpha/layer_k' (mtl-compare draws it as a T x T heatmap); the measured,
input-dependent attention (sown as intermediates) averaged over each task's evaluation examples goes next
to it as 'adapter_fusion/attention/layer_k' (`measured_attention`, at every evaluation; sharing/inspect.py).

Stage 2 or joint? Pfeiffer trains adapters first, then fusion with the adapters frozen. Here:
  joint (default)     adapters and fusion train together from fresh adapters on the frozen trunk;
  stage 2             `adapter_fusion.adapters_from = '/runs/adapters_run'` starts the adapters
                      from an `adapters` run of the SAME mixture (same task order, size,
                      placement) and gin/sharing/adapter_fusion_stage2.gin's freeze rule also
                      freezes them, so only fusion + heads train.
Params: trunk/adapter_{k}/... as in adapters.py, trunk/fusion_{k}/{place}_{query,key,value}
[T, D, D], {place}_prior [T, T]; trunk frozen by gin/sharing/adapter_fusion.gin.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mtl_jax.sharing.adapters import adapter_specs, bottleneck, check_size
from mtl_jax.sharing.base import SharingStrategy, register
from mtl_jax.sharing.peft_layer import PLACES, Hooks, TaskParams, check_config, check_names, run_trunk

_QK_INIT = nn.initializers.normal(0.02)


def _identity_plus(rng, shape, dtype=jnp.float32):  # [T, D, D]: V_t = I (+ nothing)
  del rng
  return jnp.broadcast_to(jnp.eye(shape[-1], dtype=dtype), shape)


def fusion_specs(placement, num_tasks: int, d_model: int) -> tuple:
  specs = ()
  for place in placement:
    specs += ((f"{place}_query", (d_model, d_model), ("embed", None), _QK_INIT),
              (f"{place}_key", (d_model, d_model), ("embed", None), _QK_INIT),
              (f"{place}_value", (d_model, d_model), ("embed", None), _identity_plus),
              (f"{place}_prior", (num_tasks,), (None,), nn.initializers.zeros))
  return specs


def fuse(p: dict, place: str, h, z):
  """ONE task's fusion: h [..., D], z [..., S, D] (every adapter's output) -> (out [..., D], attention [..., S]).

  Computed as (h Q K^T) . z_s and (sum_s a_s z_s) V, the same numbers as projecting every z_s by K and V
  but with one D x D product per token instead of S of them."""
  dt = h.dtype
  q = jnp.einsum("...d,de->...e", h, p[f"{place}_query"].astype(dt))
  qk = jnp.einsum("...e,de->...d", q, p[f"{place}_key"].astype(dt))          # q K^T
  logits = jnp.einsum("...d,...sd->...s", qk, z).astype(jnp.float32) / np.sqrt(h.shape[-1])
  a = jax.nn.softmax(logits + p[f"{place}_prior"].astype(jnp.float32), axis=-1)
  mixed = jnp.einsum("...s,...sd->...d", a.astype(dt), z)
  return jnp.einsum("...d,de->...e", mixed, p[f"{place}_value"].astype(dt)), a


@functools.lru_cache(maxsize=4)
def _trained_adapters(model_dir: str) -> dict:
  """{'adapter_{k}/<name>': array} from an adapters run's latest checkpoint (host, cached)."""
  import pathlib
  from mtl_jax.transfer import init_from
  path = pathlib.Path(model_dir).absolute()
  spec = init_from.read_spec(path)
  if spec.get("sharing") != "adapters":
    raise ValueError(f"adapter_fusion.adapters_from={model_dir!r} is a {spec.get('sharing')!r} run; "
                     "point it at an 'adapters' run of the same mixture")
  params, _ = init_from.restore_params(path)
  flat = traverse_util.flatten_dict(nn.meta.unbox(params), sep="/")
  return {p.split("trunk/", 1)[1]: np.asarray(v) for p, v in flat.items() if p.startswith("trunk/adapter_")}


def _from_run(model_dir: str, key: str):
  def init(rng, shape, dtype=jnp.float32):
    del rng
    trained = _trained_adapters(model_dir)
    if key not in trained:
      raise ValueError(f"adapter_fusion.adapters_from={model_dir!r} has no adapter param {key!r}; "
                       "its adapters' size and placement must match adapter_fusion's")
    if trained[key].shape != tuple(shape):
      raise ValueError(f"adapter {key!r} of {model_dir!r} has shape {trained[key].shape}, this model needs "
                       f"{tuple(shape)}: the run must have the same tasks, size and placement")
    return jnp.asarray(trained[key], dtype)
  return init


class _FusionHooks(Hooks):
  def __init__(self, module, adapters_T, fusion_T, router, placement, exact_gelu):
    self.module, self.adapters_T, self.fusion_T, self.router = module, adapters_T, fusion_T, router
    self.placement, self.exact_gelu = placement, exact_gelu

  def adapt(self, place, h):
    if place not in self.placement:
      return h
    z_SBLD = h[None] + jax.vmap(lambda p: bottleneck(p, place, h, self.exact_gelu))(self.adapters_T)
    z_BLSD = jnp.moveaxis(z_SBLD, 0, 2)
    out, attention_BLS = self.router(lambda p, hr, zr: fuse(p, place, hr, zr), self.fusion_T, h, z_BLSD)
    self.module.sow("intermediates", f"attention_{place}", attention_BLS)
    return out


class AdapterFusion(SharingStrategy):
  size: int = 64
  placement: Sequence[str] = ("mlp",)
  adapters_from: str | None = None

  @nn.compact
  def __call__(self, x, mask, task_id, deterministic: bool = True, grouped: bool = False):
    cfg, t = self.config, self.num_tasks
    specs = adapter_specs(self.placement, cfg.d_model, self.size)

    def hooks_for(k, router):
      layer_specs = specs if self.adapters_from is None else tuple(
          (n, s, a, _from_run(self.adapters_from, f"adapter_{k}/{n}")) for n, s, a, _ in specs)
      adapters_T = TaskParams(t, layer_specs, cfg.param_dtype, name=f"adapter_{k}")()
      fusion_T = TaskParams(t, fusion_specs(self.placement, t, cfg.d_model), cfg.param_dtype, name=f"fusion_{k}")()
      return _FusionHooks(self, adapters_T, fusion_T, router, self.placement, cfg.gelu_exact)

    return run_trunk(self, x, mask, task_id, deterministic, grouped, hooks_for)


def prior_weights(flat_params: dict) -> dict[str, list]:
  """{'adapter_fusion/alpha/layer_k': softmax(prior) [T, T]} (row t: how much task t reads each adapter)."""
  import re
  out = {}
  for path, value in flat_params.items():
    if m := re.search(r"(?:^|/)fusion_(\d+)/(\w+)_prior$", path):
      prior = np.asarray(jax.device_get(value), np.float64)
      e = np.exp(prior - prior.max(-1, keepdims=True))
      suffix = "" if m.group(2) == "mlp" else f"_{m.group(2)}"
      out[f"adapter_fusion/alpha/layer_{int(m.group(1))}{suffix}"] = (e / e.sum(-1, keepdims=True)).tolist()
  return out


def attention_sums(model, params, batch) -> tuple[dict, jnp.ndarray]:
  """Jittable: ({'adapter_fusion/attention/layer_k': [T, T] sum over real examples of each example's fusion
  attention averaged over its real tokens}, real examples per task [T]). Padding rows (weight 0) and padding
  tokens (input_mask 0) are excluded; sums, so batches add up."""
  import re
  _, state = model.apply({"params": params}, batch, deterministic=True, mutable=["intermediates"])
  task_id, mask = batch["task_id"], batch["input_mask"].astype(jnp.float32)
  real = (batch["weight"] > 0).astype(jnp.float32) if "weight" in batch else jnp.ones(task_id.shape, jnp.float32)
  num_tasks, sums = len(model.num_classes), {}
  count = jax.ops.segment_sum(real, task_id, num_segments=num_tasks)
  for path, per_layer in traverse_util.flatten_dict(state.get("intermediates", {}), sep="/").items():
    m = re.search(r"(?:^|/)attention_(attention|mlp)$", path)
    for k, a_BLS in enumerate(per_layer if m else ()):  # sown once per layer, in layer order
      per_example = (a_BLS * mask[..., None]).sum(1) / jnp.maximum(mask.sum(1), 1.0)[:, None]
      suffix = "" if m.group(1) == "mlp" else f"_{m.group(1)}"
      sums[f"adapter_fusion/attention/layer_{k}{suffix}"] = jax.ops.segment_sum(
          per_example * real[:, None], task_id, num_segments=num_tasks)
  return sums, count


def measured_attention(batches, attention_sums_fn) -> dict[str, list]:
  """{'adapter_fusion/attention/layer_k': [T, T]}: row t = task t's fusion attention over the T adapters,
  averaged over task t's real examples in `batches` (rows of tasks with none are 0). `attention_sums_fn(batch)`
  is `attention_sums` bound to a model and params (jitted by the caller)."""
  total, count = {}, 0.0
  for batch in batches:
    sums, n = jax.device_get(attention_sums_fn(batch))
    total = {k: total.get(k, 0.0) + np.asarray(v, np.float64) for k, v in sums.items()}
    count = count + np.asarray(n, np.float64)
  return {k: (v / np.maximum(count, 1.0)[:, None]).tolist() for k, v in sorted(total.items())}


@register("adapter_fusion")
@gin.configurable("adapter_fusion")
def adapter_fusion(config, num_tasks, size: int = 64, placement: Sequence[str] = ("mlp",),
                   adapters_from: str | None = None):
  """size / placement: the adapters' (must match adapters_from's run); adapters_from: an adapters
  MODEL_DIR to start the adapters from (stage 2), None = train adapters and fusion jointly."""
  check_config(config, "adapter_fusion")
  if adapters_from is not None and not isinstance(adapters_from, str):
    raise ValueError(f"adapter_fusion.adapters_from={adapters_from!r} must be an adapters run's MODEL_DIR or None")
  if adapters_from is not None:
    _trained_adapters(adapters_from)  # restore now, on the host: the params' init runs traced under jit
  return AdapterFusion(config, num_tasks, size=check_size(size, "adapter_fusion.size"),
                       placement=check_names(placement, PLACES, "adapter_fusion.placement"),
                       adapters_from=adapters_from)
