"""TaskEmb (Vu et al. 2020): the diagonal Fisher information of a model fine-tuned on a task, kept per component.

Components (each compared on its own by `components.py`, as the authors do):
  params       F[w] for every trunk parameter tensor (embedder optional: `params='all'`)
  layer_k      layer k's output h_k [D]            (authors: `encoder.layer.k.layer_output`)
  attention_k  layer k's attention output [D]      (authors: `multihead_output`, the heads' context BEFORE the
               output projection; here AFTER it, the value SelfAttention returns: the gradients differ by W_out)
  pooled       the vector the sequence heads read [D] (authors: `cls_output`, BERT's tanh pooler; here the
               masked mean or [CLS] state the model pools)
  classifier   F of the task's own head slice (heads/kernel[task], heads/bias[task]) (`classifier=True`)

Statistics (`statistic`, per example n of L_n real tokens, g the gradient of its loss):
  'sequence' (default; the authors' statistic)  params g^2; activations (sum_l g_l)^2 / L_n; pooled g^2 / L_n.
             This is the released run_taskemb_CR.py at batch size 1: it squares the gradient SUMMED over the
             tokens and divides by the token count (the pooled vector included).
  'batch'    the released code at its batch size B exactly: the gradient of the batch-MEAN loss, summed over
             the batch's tokens, squared, divided by the batch's tokens; parameters (mean_n g_n)^2; every
             batch's value summed and divided by the number of examples (so it mixes examples of a batch).
  'token'    (mtl_jax's former default) params g^2; activations mean_l g_l^2 (per token, then averaged).
Each is averaged over the examples: F = (1/N) sum_n stat_n. loss_n uses the gold label ('labels': the
empirical Fisher, the authors' default `use_labels=True`) or a label sampled from the model ('sampled':
one draw per example; the authors draw `num_trials_for_FIM`=100 and regression from N(pred, 0.25) kept in
[0, 5]; here one draw and N(pred, 1), which only rescales).

Examples: the whole training split by default (`max_examples=None`), as the paper; a cap for speed.
Differences from the paper that remain: no BERT, no further fine-tuning while embedding
(`finetune_classifier=False` in the README's commands, as here), tokens counted are the real tokens of
our tokenizer (the authors' include [CLS]/[SEP]).
Gradients: per-example gradients are one `jax.vmap` of `jax.grad` per batch (one jit); padding rows
(weight 0) count for nothing. Activation gradients come from zero perturbations added to each
`layer_{k}` output, its `attention` output and the heads' input by a flax method interceptor, so no
model code changes (a layer is any model_type's registered layer class: models/families.py); they need a
one-trunk (hard sharing) run with unrolled layers.
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
from mtl_jax.models import families
from mtl_jax.models.heads import TaskHeads

LABELS = ("labels", "sampled")
PARAMS = ("trunk", "all", "none")
STATISTICS = ("sequence", "batch", "token")
_LAYER = re.compile(r"^layer_(\d+)$")


def selected(path: str, which: str) -> bool:
  """Is this param in the Fisher? 'trunk': the sharing trunk (not embedder, not heads); 'all': + embedder."""
  if which == "none" or path.startswith("heads/"):
    return False
  return which == "all" or not path.startswith("embedder/")


def _layer_index(module) -> int | None:
  match = _LAYER.match(module.name or "")
  return int(match.group(1)) if match else None


def _with_perturbations(fn, pert):
  """Runs fn with pert['layers'][k] added to every `layer_{k}` output, pert['attention'][k] to its attention
  output and pert['pooled'] to every token the heads read (pert None: unchanged)."""
  if pert is None:
    return fn()

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    if isinstance(module, TaskHeads) and "pooled" in pert:
      h = args[0]
      return next_fun(h + pert["pooled"][:, None, :].astype(h.dtype), *args[1:], **kwargs)
    out = next_fun(*args, **kwargs)
    layers = families.layer_classes()  # every model_type's layer (models/families.py), not only BERT's
    if isinstance(module, layers) and _layer_index(module) is not None:
      out = out + pert["layers"][_layer_index(module)].astype(out.dtype)
    elif module.name == "attention" and isinstance(module.parent, layers) and _layer_index(module.parent) is not None \
        and "attention" in pert:
      out = out + pert["attention"][_layer_index(module.parent)].astype(out.dtype)
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
  statistic: str = "sequence"  # STATISTICS
  classifier: bool = False     # the task's head slice as a component
  task_index: int = 0          # which head slice is the task's

  def __post_init__(self):
    if self.params not in PARAMS:
      raise ValueError(f"TaskEmb params={self.params!r}: use one of {PARAMS}")
    if self.labels not in LABELS:
      raise ValueError(f"TaskEmb labels={self.labels!r}: use one of {LABELS}")
    if self.statistic not in STATISTICS:
      raise ValueError(f"TaskEmb statistic={self.statistic!r}: use one of {STATISTICS}")
    if self.params == "none" and not self.activations and not self.classifier:
      raise ValueError("TaskEmb with params='none' and no activations has nothing to measure; "
                       "use params='trunk' or activations=True")

  def grad_params(self, path: str) -> bool:
    return selected(path, self.params) or (self.classifier and path.startswith("heads/"))


def _example_loss(spec: FisherSpec, sel, rest, pert, example, key):
  """The loss of one example (a batch of 1) as a function of the selected params and perturbations."""
  params = traverse_util.unflatten_dict({**rest, **sel}, sep="/")
  batch = jax.tree.map(lambda x: x[None], example)

  def forward():
    return spec.model.apply({"params": params}, batch, deterministic=True)

  out = _with_perturbations(forward, None if pert is None else jax.tree.map(lambda a: a[None] if a.ndim == 1
                                                                            else a[:, None], pert))
  if spec.labels == "sampled":
    if any(k not in ("classification", "regression") for k in spec.task_kinds):  # tagging, span_qa, choices
      raise ValueError("TaskEmb labels='sampled' covers classification / regression tasks; use labels='labels'")
    logits = jax.lax.stop_gradient(out.pooled_logits)
    batch = dict(batch, label=jax.random.categorical(key, logits).astype(jnp.int32),
                 score=logits[:, 0] + jax.random.normal(key, logits[:, 0].shape))
  return losses.example_losses(out, batch, spec.task_kinds)[0]


def _zero_perturbations(spec: FisherSpec, n: int, length: int) -> dict | None:
  if not spec.activations:
    return None
  k, d = spec.num_layers, spec.d_model
  return {"layers": jnp.zeros((n, k, length, d)), "attention": jnp.zeros((n, k, length, d)),
          "pooled": jnp.zeros((n, d))}


def batch_sums(spec: FisherSpec, sel, rest, batch, key):
  """({component: sum over this batch of the per-example (or per-batch) statistic}, sum_n w_n)."""
  weight = batch["weight"].astype(jnp.float32)
  mask = batch["input_mask"].astype(jnp.float32)  # [N, L]
  tokens = jnp.maximum(mask.sum(1), 1.0)  # [N]
  pert = _zero_perturbations(spec, len(weight), batch["input_ids"].shape[1])
  keys = jax.random.split(key, len(weight))

  def one(example, p, k):
    return jax.grad(lambda s, a: _example_loss(spec, s, rest, a, example, k), argnums=(0, 1))(sel, p)

  g_sel, g_pert = jax.vmap(one, in_axes=(0, 0 if pert is not None else None, 0))(batch, pert, keys)
  out = {}
  if spec.statistic == "batch":  # the released code: one backward of the batch-mean loss per batch
    real = jnp.maximum(weight.sum(), 1.0)
    for p, g in g_sel.items():
      out["p:" + p] = (jnp.einsum("n,n...->...", weight, g.astype(jnp.float32)) / real) ** 2
    if pert is not None:
      batch_tokens = jnp.maximum(jnp.einsum("n,n->", weight, mask.sum(1)), 1.0)
      for name in ("layers", "attention"):
        out[name] = (jnp.einsum("n,nl,nkld->kd", weight, mask, g_pert[name]) / real) ** 2 / batch_tokens
      out["pooled"] = (jnp.einsum("n,nd->d", weight, g_pert["pooled"]) / real) ** 2 / batch_tokens
    return out, weight.sum()  # summed over batches and divided by all examples, as the authors normalise
  for p, g in g_sel.items():
    out["p:" + p] = jnp.einsum("n,n...->...", weight, g.astype(jnp.float32) ** 2)
  if pert is not None:
    for name in ("layers", "attention"):
      g = g_pert[name]  # [N, K, L, D]
      if spec.statistic == "sequence":
        stat = jnp.einsum("nl,nkld->nkd", mask, g) ** 2 / tokens[:, None, None]
      else:
        stat = jnp.einsum("nl,nkld->nkd", mask, g ** 2) / tokens[:, None, None]
      out[name] = jnp.einsum("n,nkd->kd", weight, stat)
    pooled = g_pert["pooled"] ** 2  # [N, D]
    if spec.statistic == "sequence":
      pooled = pooled / tokens[:, None]
    out["pooled"] = jnp.einsum("n,nd->d", weight, pooled)
  return out, weight.sum()


def diagonal_fisher(spec: FisherSpec, params, batches: Iterable[Mapping[str, np.ndarray]],
                    seed: int = 0) -> dict:
  """{'params': {path: F}, 'activations': [K, D] (layer outputs) or None, 'attention': [K, D] or None,
  'pooled': [D] or None, 'classifier': {path: F of the task's slice}, 'examples': n, 'statistic'}."""
  flat = traverse_util.flatten_dict(params, sep="/")
  sel = {p: v for p, v in flat.items() if spec.grad_params(p)}
  rest = {p: v for p, v in flat.items() if p not in sel}
  step = jax.jit(lambda sel, rest, batch, key: batch_sums(spec, sel, rest, batch, key))
  add = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b), donate_argnums=(0,))
  total, key = None, jax.random.key(seed)
  for i, batch in enumerate(batches):
    sums = step(sel, rest, {k: jnp.asarray(v) for k, v in batch.items()}, jax.random.fold_in(key, i))
    total = sums if total is None else add(total, sums)
  if total is None or float(total[1]) == 0:
    raise ValueError("TaskEmb saw no examples: the task's split is empty")
  sums, n = jax.device_get(total)
  mean = {k: np.asarray(v / n, np.float32) for k, v in sums.items()}
  trunk = {k[2:]: v for k, v in mean.items() if k.startswith("p:") and not k.startswith("p:heads/")}
  heads = {k[2:]: v[spec.task_index] for k, v in mean.items() if k.startswith("p:heads/")}
  return {"params": {p: v for p, v in trunk.items() if selected(p, spec.params)},
          "classifier": heads,
          "activations": mean.get("layers"), "attention": mean.get("attention"), "pooled": mean.get("pooled"),
          "examples": float(n), "statistic": spec.statistic}


def flat_vector(fisher_params: Mapping[str, np.ndarray]) -> np.ndarray:
  """The parameter Fisher as one vector (paths in sorted order): the concatenated TaskEmb (`components.py`
  compares each tensor on its own instead)."""
  return np.concatenate([np.ravel(fisher_params[p]) for p in sorted(fisher_params)]) if fisher_params \
      else np.zeros((0,), np.float32)


def run_fisher(model_dir: pathlib.Path, task_name: str, length: int, batch_size: int = 8,
               max_examples: int | None = None, params: str = "trunk", activations: bool = True,
               labels: str = "labels", seed: int = 0, split: str = "train", statistic: str = "sequence",
               classifier: bool = True, example_limit: int | None = None, subset_seed: int = 0) -> dict:
  """TaskEmb of `task_name` from an mtl-train run fine-tuned on it (its MODEL_DIR, latest checkpoint).

  max_examples None: the whole split (the paper), else a cap. example_limit N: the very N-example subset
  a run with `train_example_limit.limit=N` (subset seed `subset_seed`, the run's seed by default there)
  trained on: a target embedded from its own limited-data regime."""
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
  fspec = FisherSpec(model, kinds, params, activations, labels, config.num_layers, config.d_model, statistic,
                     classifier, list(spec_json["tasks"]).index(task_name))
  state_params, step = init_from.restore_params(model_dir)
  with gin.unlock_config():  # the task tokenizes as the run did (its pretrained checkpoint, or none)
    gin.bind_parameter("pretrained.checkpoint", (spec_json.get("pretrained") or {}).get("checkpoint"))
  task = seqio.get_mixture_or_task(task_name)
  caps = [c for c in (max_examples, example_limit) if c is not None]
  cap = min(caps) if caps else None

  if example_limit is not None:
    stream = regime_batches(task, list(spec_json["tasks"]), length, batch_size, example_limit, subset_seed)
  else:
    stream = input_pipeline.eval_batches(task, list(spec_json["tasks"]), {"inputs": length}, batch_size, split)

  def batches():
    left = cap
    for batch in stream:
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


def regime_batches(task, all_task_names, length: int, batch_size: int, limit: int, subset_seed: int) -> list[dict]:
  """The `limit` training examples input_pipeline._limited_train_dataset draws (same shuffle seed), once each."""
  from mtl_jax.input import input_pipeline
  from mtl_jax.input.features import EncoderFeatureConverter, pad_batch
  ds = task.get_dataset(sequence_length={"inputs": length}, split="train", shuffle=False, num_epochs=1,
                        try_in_mem_cache=False)
  ds = ds.shuffle(1 << 20, seed=input_pipeline.derive_seed(subset_seed, "subset", task.name),
                  reshuffle_each_iteration=False).take(limit)
  ds = EncoderFeatureConverter(all_task_names)(ds, {"inputs": length}).batch(batch_size)
  return [pad_batch(b, batch_size) for b in ds.as_numpy_iterator()]
