"""The learned mixing weights of a trained model, as JSON-friendly nested lists.

Found by parameter path (any prefix, boxed or not, host or device arrays):
  '<strategy>/alpha/layer_<k>'  sluice or cross_stitch alpha_k as a [TM, TM] matrix;
                                row = output block t*M + m, column = input block s*M + n
                                (M = 1 for cross-stitch: plain [T, T], row = receiving task)
  'sluice/beta'                 [T, K] layer-mix weights of each task's head input
  'mmoe/gate_logits/bias'       [T, E] each task's gate logits for a zero (mean-pooled) input
  'mmoe/gate_logits/kernel_norm'[T, E] L2 norm over d_model of each task/expert gate column:
                                how strongly the gate depends on the input
  'adapter_fusion/alpha/layer_<k>' [T, T] softmax of AdapterFusion's learned prior logits:
                                row = reading task, column = whose adapter (adapter_fusion.py)
  'adapter_fusion/attention/layer_<k>' [T, T] its measured fusion attention, averaged over each task's
                                validation examples (given `steps` and `evaluator`: one extra forward)
For the data-dependent MMoE gate see `gate_probabilities`.
"""

from __future__ import annotations

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mtl_jax.sharing import adapter_fusion

_ALPHA = re.compile(r"(?:^|/)(sluice|cross_stitch)/alpha_(\d+)$")
_BETA = re.compile(r"(?:^|/)sluice/beta$")
_GATE = re.compile(r"(?:^|/)mmoe/gate_(bias|kernel)$")


def mixing_weights(params, steps=None, evaluator=None) -> dict[str, list]:
  """alpha / beta / MMoE gate parameters by path; {} for strategies without any (hard, soft). With the run's
  steps.Steps and evaluation.Evaluator, AdapterFusion's attention measured on the validation batches too."""
  out, flat = {}, traverse_util.flatten_dict(nn.meta.unbox(params), sep="/")
  for path, value in flat.items():
    if m := _ALPHA.search(path):
      a = np.asarray(jax.device_get(value), np.float64)
      n = int(round(np.sqrt(a.size)))
      out[f"{m.group(1)}/alpha/layer_{int(m.group(2))}"] = a.reshape(n, n).tolist()
    elif _BETA.search(path):
      out["sluice/beta"] = np.asarray(jax.device_get(value), np.float64).tolist()
    elif m := _GATE.search(path):
      g = np.asarray(jax.device_get(value), np.float64)
      if m.group(1) == "bias":
        out["mmoe/gate_logits/bias"] = g.tolist()
      else:
        out["mmoe/gate_logits/kernel_norm"] = np.linalg.norm(g, axis=1).tolist()
  prior = adapter_fusion.prior_weights(flat)
  out.update(prior)
  if prior and steps is not None and evaluator is not None:
    batches = [b for (_, split), bs in evaluator.batches.items() if split == "validation" for b in bs]
    fn = _fusion_attention_step(steps)
    with jax.set_mesh(steps.mesh):
      out.update(adapter_fusion.measured_attention(batches, lambda b: fn(params, steps.put_global_batch(b))))
  return dict(sorted(out.items()))


@functools.lru_cache(maxsize=2)
def _fusion_attention_step(steps):
  """adapter_fusion.attention_sums jitted once per Steps, under its sharding rules."""
  def sums(params, batch):
    with nn.logical_axis_rules(steps.rules):
      return adapter_fusion.attention_sums(steps.model, params, batch)
  return jax.jit(sums, in_shardings=(steps.state_shardings.params, steps.batch_shardings))


def gate_probabilities(model, params, batch) -> dict[str, list]:
  """For a MultiTaskModel: {'mmoe/gate_probabilities': [T, E]}: each task's mean gate over its examples in `batch`
  (rows of tasks absent from the batch are all 0); {} if the model has no MMoE gate."""
  _, state = model.apply({"params": params}, batch, deterministic=True, mutable=["intermediates"])
  gates = [v for p, v in traverse_util.flatten_dict(state.get("intermediates", {}), sep="/").items()
           if re.search(r"(?:^|/)mmoe/gate$", p)]
  if not gates:
    return {}
  gate_BE, task_id = gates[0][0], jnp.asarray(batch["task_id"])
  num_tasks = len(model.num_classes)
  total_TE = jax.ops.segment_sum(gate_BE, task_id, num_segments=num_tasks)
  count_T = jax.ops.segment_sum(jnp.ones_like(task_id, gate_BE.dtype), task_id, num_segments=num_tasks)
  return {"mmoe/gate_probabilities": np.asarray(total_TE / jnp.maximum(count_T, 1.0)[:, None]).tolist()}
