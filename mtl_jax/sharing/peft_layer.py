"""The frozen-trunk layer that parameter-efficient strategies (adapters, LoRA, AdapterFusion) hook into.

`PeftLayer` is `encoder.TransformerLayer` with two seams: `hooks.lora(name, x)` adds a low-rank
delta to a projection's output (query / key / value / out / wi / wo) and `hooks.adapt(place, h)`
rewrites a sublayer's output ('attention' or 'mlp', after its dropout, before the residual add:
Houlsby et al. 2019). Its parameter names are TransformerLayer's exactly (`attention/query_kernel`,
`mlp/wi/kernel`, `ln_attention/...`), so a pretrained checkpoint loads by the `layer_{k}/` path rule
and the trunk exports as a plain BERT. Per-task parameters live OUTSIDE `layer_{k}/` (under
`adapter/`, `lora/`, `fusion/`) so the loader leaves them fresh and a freeze rule can keep the trunk
frozen while they train.

Routing per task without a Python loop over tasks (`Router`):
  grouped batches  the strategy sorts rows task-major once, so each hook runs as one vmap over
                   [T, B/T] row groups with task t's parameters;
  mixed batches    each example gathers its task's (small) parameters and the hook runs under a
                   vmap over examples (a batched matmul).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl_jax.models import families, projections, segments
from mtl_jax.models.encoder import EncoderConfig, LayerNorm, final_norm, param_init, residual_block

PLACES = ("attention", "mlp")
PROJECTIONS = ("query", "key", "value", "out", "wi", "wo")


def check_config(config: EncoderConfig, strategy: str) -> None:
  if config.scan_layers:
    raise ValueError(f"{strategy} sharing builds its own layer_{{k}} stack; set EncoderConfig.scan_layers=False")
  if config.remat_policy != "none":
    raise ValueError(f"{strategy} sharing does not support EncoderConfig.remat_policy={config.remat_policy!r}; "
                     "set it to 'none'")


def check_names(values, allowed, where: str) -> tuple[str, ...]:
  values = (values,) if isinstance(values, str) else tuple(values)
  bad = [v for v in values if v not in allowed]
  if bad or not values:
    raise ValueError(f"{where}={list(values)!r}: each entry must be one of {allowed} (and at least one)")
  return values


@dataclasses.dataclass(frozen=True)
class Router:
  """Applies fn(params_of_one_task, *rows) to every example with its own task's params."""

  task_id: jax.Array
  num_tasks: int
  grouped: bool   # rows are task-major, B/T per task (the strategy sorted them)

  def __call__(self, fn: Callable, params_T, *xs):
    if self.grouped:
      t = self.num_tasks
      split = lambda a: a.reshape((t, a.shape[0] // t) + a.shape[1:])
      out = jax.vmap(fn)(params_T, *map(split, xs))
      return jax.tree.map(lambda o: o.reshape((-1,) + o.shape[2:]), out)
    params_B = jax.tree.map(lambda w: w[self.task_id], params_T)  # getitem clamps (like soft's gather)
    one = lambda p, *x: jax.tree.map(lambda o: o[0], fn(p, *(a[None] for a in x)))
    return jax.vmap(one)(params_B, *xs)


class Hooks:
  """No hooks: PeftLayer then computes exactly TransformerLayer."""

  def lora(self, name: str, x):  # noqa: ARG002 - the seam's signature
    return None

  def adapt(self, place: str, h):  # noqa: ARG002
    return h


class PeftAttention(nn.Module):
  """encoder.SelfAttention (same params, same math) plus hooks.lora on the four projections."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask, deterministic: bool, hooks: Hooks):
    cfg = self.config
    dt = cfg.compute_dtype
    x = x.astype(dt)
    proj = lambda name: projections.in_projection(self, name, x, hooks, bias=True)
    q_BLHK, k_BLHK, v_BLHK = proj("query"), proj("key"), proj("value")
    logits_BHLL = jnp.einsum("bqhk,bshk->bhqs", q_BLHK, k_BLHK) / jnp.sqrt(cfg.head_dim).astype(x.dtype)
    logits_BHLL = logits_BHLL.astype(jnp.float32)
    logits_BHLL = jnp.where(segments.attention_allowed(mask), logits_BHLL, jnp.finfo(logits_BHLL.dtype).min)
    probs_BHLL = nn.Dropout(cfg.dropout_rate)(nn.softmax(logits_BHLL, axis=-1), deterministic=deterministic)
    out_BLHK = jnp.einsum("bhqs,bshk->bqhk", probs_BHLL.astype(dt), v_BLHK)
    return projections.out_projection(self, out_BLHK, hooks, bias=True)


class PeftMlp(nn.Module):
  """encoder.Mlp (same params) plus hooks.lora on wi and wo."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, deterministic: bool, hooks: Hooks):
    cfg = self.config
    dense = lambda name, features, axes, inp: projections.dense(cfg, name, features, axes, inp, hooks, bias=True)
    h = dense("wi", cfg.mlp_dim, ("embed", "mlp"), x)
    h = nn.with_logical_constraint(nn.gelu(h, approximate=not cfg.gelu_exact), ("batch", "length", "mlp"))
    if cfg.norm == "pre":
      h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return dense("wo", cfg.d_model, ("mlp", "embed"), h)


class PeftLayer(nn.Module):
  """encoder.TransformerLayer with the lora / adapt seams (names and math unchanged without hooks)."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask, deterministic: bool, hooks: Hooks):
    cfg = self.config
    drop = lambda h: nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    ln_attention = LayerNorm(cfg.layer_norm_eps, cfg.param_dtype, name="ln_attention")
    ln_mlp = LayerNorm(cfg.layer_norm_eps, cfg.param_dtype, name="ln_mlp")
    attention = lambda h: hooks.adapt("attention", drop(PeftAttention(cfg, name="attention")(h, mask, deterministic,
                                                                                             hooks)))
    mlp = lambda h: hooks.adapt("mlp", drop(PeftMlp(cfg, name="mlp")(h, deterministic, hooks)))
    return residual_block(cfg.norm, x, attention, mlp, ln_attention, ln_mlp)


for _model_type in families.BERT_FAMILY:
  families.register(_model_type, peft_layer=PeftLayer)


def run_trunk(module, x, mask, task_id, deterministic: bool, grouped: bool, hooks_for: Callable):
  """Call inside a strategy's compact __call__: K PeftLayers named layer_{k} (+ the pre-LN final norm).

  hooks_for(k, router) -> Hooks for layer k (it may create the strategy's per-task params)."""
  cfg, num_tasks = module.config, module.num_tasks
  order = None
  if grouped:
    if x.shape[0] % num_tasks:
      raise ValueError(f"grouped {type(module).__name__}: batch {x.shape[0]} is not divisible by {num_tasks} tasks")
    order = jnp.argsort(task_id, stable=True)  # task-major rows: the identity for one process's grouped batch
    x, mask, task_id = x[order], mask[order], task_id[order]
  router = Router(task_id, num_tasks, grouped)
  layer = families.layer_class(cfg, peft=True)  # PeftLayer, or the model_type's layer with the same seams
  layer_mask = families.layer_inputs(cfg, mask, x.shape[1])  # the mask (+ T5's shared relative bias)
  for k in range(cfg.num_layers):
    x = layer(cfg, name=f"layer_{k}")(x, layer_mask, deterministic, hooks_for(k, router))
  x = final_norm(cfg)(x)
  return x if order is None else x[jnp.argsort(order)]


class TaskParams(nn.Module):
  """Per-task parameters [T, *shape] on logical axes ('tasks', *axes); calling it returns {name: array}.

  specs: ((name, shape, axes, init), ...)."""

  num_tasks: int
  specs: tuple
  param_dtype: str = "float32"

  @nn.compact
  def __call__(self):
    from mtl_jax.scale import precision
    return {name: self.param(name, param_init(init, ("tasks",) + tuple(axes)), (self.num_tasks,) + tuple(shape),
                             precision.dtype(self.param_dtype))
            for name, shape, axes, init in self.specs}
