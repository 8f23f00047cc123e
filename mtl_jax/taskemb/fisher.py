"""TaskEmb (Vu et al. 2020): the diagonal empirical Fisher information of a model fine-tuned on a task.

  F_params[w] = mean_n (d loss_n / d w)^2                       trunk parameters (embedder optional)
  F_acts[k, d] = mean_n mean_{real tokens l} (d loss_n / d h_k[l, d])^2   layer k's output h_k

loss_n is the example's loss under its task's head with its gold label ('labels': the empirical
Fisher), or with a label drawn from the model's own prediction ('sampled': the true Fisher;
classes ~ softmax, a regression score ~ N(prediction, 1), which only rescales the vector).
One pass over the examples: per-example gradients are one `jax.vmap` of `jax.grad` per batch (one
jit), squared and summed on device; padding rows (weight 0) count for nothing. Activation gradients
come from a zero perturbation added to each `layer_{k}` output by a flax method interceptor, so no
model code changes; they need a one-trunk (hard sharing) run.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Iterable, Mapping, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mtl_jax.step import losses
from mtl_jax.pretrained import settings as _settings  # noqa: F401  registers gin `pretrained.*`
from mtl_jax.models.encoder import TransformerLayer

LABELS = ("labels", "sampled")
PARAMS = ("trunk", "all", "none")
_LAYER = re.compile(r"^layer_(\d+)$")


def selected(path: str, which: str) -> bool:
  """Is this param in the Fisher? 'trunk': the sharing trunk (not embedder, not heads); 'all': + embedder."""
  if which == "none" or path.startswith("heads/"):
    return False
  return which == "all" or not path.startswith("embedder/")


def _with_layer_perturbations(fn, acts):
  """Runs fn with acts[k] added to every `layer_{k}` TransformerLayer output (acts None: unchanged)."""
  if acts is None:
    return fn()

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    match = _LAYER.match(context.module.name or "")
    if isinstance(context.module, TransformerLayer) and context.method_name == "__call__" and match:
      out = out + acts[int(match.group(1))].astype(out.dtype)
    return out

  with nn.intercept_methods(interceptor):
    return fn()


@dataclasses.dataclass
class FisherSpec:
  model: nn.Module
  task_kinds: Sequence[str]
  params: str = "trunk"        # PARAMS
  activations: bool = True
  labels: str = "labels"       # LABELS
  num_layers: int = 0
  d_model: int = 0

  def __post_init__(self):
    if self.params not in PARAMS:
      raise ValueError(f"TaskEmb params={self.params!r}: use one of {PARAMS}")
    if self.labels not in LABELS:
      raise ValueError(f"TaskEmb labels={self.labels!r}: use one of {LABELS}")
    if self.params == "none" and not self.activations:
      raise ValueError("TaskEmb with params='none' and no activations has nothing to measure; "
                       "use params='trunk' or activations=True")


def _example_loss(spec: FisherSpec, sel, rest, acts, example, key):
  """The loss of one example (a batch of 1) as a function of the selected params and activations."""
  params = traverse_util.unflatten_dict({**rest, **sel}, sep="/")
  batch = jax.tree.map(lambda x: x[None], example)

  def forward():
    return spec.model.apply({"params": params}, batch, deterministic=True)

  out = _with_layer_perturbations(forward, None if acts is None else acts[:, None])
  if spec.labels == "sampled":
    kinds = [spec.task_kinds[i] for i in range(len(spec.task_kinds))]
    if "tagging" in kinds:
      raise ValueError("TaskEmb labels='sampled' covers classification / regression tasks; use labels='labels'")
    logits = jax.lax.stop_gradient(out.pooled_logits)
    batch = dict(batch, label=jax.random.categorical(key, logits).astype(jnp.int32),
                 score=logits[:, 0] + jax.random.normal(key, logits[:, 0].shape))
  return losses.example_losses(out, batch, spec.task_kinds)[0]


def batch_sums(spec: FisherSpec, sel, rest, batch, key):
  """(sum_n w_n g_n^2 over params {path: array}, sum_n w_n mean_l g_n^2 over activations [K, D], sum_n w_n)."""
  weight = batch["weight"].astype(jnp.float32)
  length = batch["input_ids"].shape[1]
  acts = jnp.zeros((len(weight), spec.num_layers, length, spec.d_model), jnp.float32) if spec.activations else None
  keys = jax.random.split(key, len(weight))

  def one(example, act, k):
    argnums = (0, 1) if spec.activations else (0,)
    grads = jax.grad(lambda s, a: _example_loss(spec, s, rest, a, example, k), argnums=argnums)(sel, act)
    return grads if spec.activations else (grads[0], None)

  g_sel, g_act = jax.vmap(one, in_axes=(0, 0 if spec.activations else None, 0))(batch, acts, keys)
  psum = {p: jnp.einsum("n,n...->...", weight, g.astype(jnp.float32) ** 2) for p, g in g_sel.items()}
  if spec.activations:
    mask = batch["input_mask"].astype(jnp.float32)  # [N, L]
    per_token = jnp.einsum("nl,nkld->nkd", mask, g_act ** 2) / jnp.maximum(mask.sum(1), 1.0)[:, None, None]
    asum = jnp.einsum("n,nkd->kd", weight, per_token)
  else:
    asum = jnp.zeros((0,), jnp.float32)
  return psum, asum, weight.sum()


def diagonal_fisher(spec: FisherSpec, params, batches: Iterable[Mapping[str, np.ndarray]],
                    seed: int = 0) -> dict:
  """{'params': {path: F}, 'activations': [K, D] or None, 'examples': n} over every batch."""
  flat = traverse_util.flatten_dict(params, sep="/")
  sel = {p: v for p, v in flat.items() if selected(p, spec.params)}
  rest = {p: v for p, v in flat.items() if p not in sel}
  step = jax.jit(lambda sel, rest, batch, key: batch_sums(spec, sel, rest, batch, key))
  add = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b), donate_argnums=(0,))
  total, key = None, jax.random.key(seed)
  for i, batch in enumerate(batches):
    sums = step(sel, rest, {k: jnp.asarray(v) for k, v in batch.items()}, jax.random.fold_in(key, i))
    total = sums if total is None else add(total, sums)
  if total is None or float(total[2]) == 0:
    raise ValueError("TaskEmb saw no examples: the task's split is empty")
  psum, asum, n = jax.device_get(total)
  return {"params": {p: np.asarray(v / n, np.float32) for p, v in psum.items()},
          "activations": np.asarray(asum / n, np.float32) if spec.activations else None,
          "examples": float(n)}


def flat_vector(fisher_params: Mapping[str, np.ndarray]) -> np.ndarray:
  """The parameter Fisher as one vector (paths in sorted order): the TaskEmb compared by cosine."""
  return np.concatenate([np.ravel(fisher_params[p]) for p in sorted(fisher_params)]) if fisher_params \
      else np.zeros((0,), np.float32)


def run_fisher(model_dir: pathlib.Path, task_name: str, length: int, batch_size: int = 8,
               max_examples: int | None = 512, params: str = "trunk", activations: bool = True,
               labels: str = "labels", seed: int = 0, split: str = "train") -> dict:
  """TaskEmb of `task_name` from an mtl-train run fine-tuned on it (its MODEL_DIR, latest checkpoint)."""
  import seqio
  from mtl_jax.input import input_pipeline, task_info
  from mtl_jax.models.multitask import build_model
  from mtl_jax.transfer import init_from
  model_dir = pathlib.Path(model_dir)
  spec_json = init_from.read_spec(model_dir)
  if task_name not in spec_json["tasks"]:
    raise ValueError(f"run {str(model_dir)!r} was not trained on task {task_name!r} (its tasks: "
                     f"{', '.join(spec_json['tasks'])}); TaskEmb needs a run fine-tuned on the task")
  if activations and spec_json["sharing"] != "hard":
    raise ValueError(f"TaskEmb activations need one trunk; run {str(model_dir)!r} is {spec_json['sharing']}: "
                     "pass --no_activations or use a hard-sharing run")
  config = dataclasses.replace(init_from.encoder_config(spec_json), dropout_rate=0.0)
  model = build_model(config, spec_json["sharing"], spec_json["num_classes"])
  kinds = [task_info.get(t).kind for t in spec_json["tasks"]]
  fspec = FisherSpec(model, kinds, params, activations, labels, config.num_layers, config.d_model)
  state_params, step = init_from.restore_params(model_dir)
  with gin.unlock_config():  # the task tokenizes as the run did (its pretrained checkpoint, or none)
    gin.bind_parameter("pretrained.checkpoint", (spec_json.get("pretrained") or {}).get("checkpoint"))
  task = seqio.get_mixture_or_task(task_name)

  def batches():
    left = max_examples
    for batch in input_pipeline.eval_batches(task, list(spec_json["tasks"]), {"inputs": length}, batch_size, split):
      if left is not None:
        keep = np.cumsum(batch["weight"] > 0) <= left
        batch = dict(batch, weight=np.where(keep, batch["weight"], 0.0).astype(np.float32))
        left -= int((batch["weight"] > 0).sum())
      yield batch
      if left is not None and left <= 0:
        return

  out = diagonal_fisher(fspec, state_params, batches(), seed)
  out["step"] = step
  return out
