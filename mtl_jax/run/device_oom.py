"""Out of device memory (compile or a step) as one line: strategy, estimated bytes, remedies.

Why: XLA reports RESOURCE_EXHAUSTED with a long allocation dump; a user needs to know
how big the run is and which existing switches make it fit. The estimate is the train
state (params + optimizer moments, exact from the abstract state) plus a rough
activation figure (per step, stored for the backward pass) from the encoder sizes.
"""

from __future__ import annotations

import re

import jax
import numpy as np

from mtl_jax.run import crash_site, write_errors

_OOM = re.compile(r"RESOURCE_EXHAUSTED|out of memory|\bOOM\b", re.I)
_ASKED = re.compile(r"allocate\s+(\d[\d.]*\s*(?:[KMGT]i?B|bytes?)\b|\d+)", re.I)
_WHEN = (("init_state", "initialising the train state"), ("run_train_step", "compiling or running train step"),
         ("run_predict", "evaluating"))


def oom_error(error: BaseException) -> BaseException | None:
  if write_errors.write_failure(error) is not None:  # a full disk also says RESOURCE_EXHAUSTED
    return None
  for e in crash_site.chain(error):
    if isinstance(e, (RuntimeError, MemoryError)) and _OOM.search(str(e)):
      return e
  return None


def state_bytes(abstract_state) -> int:
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(abstract_state)
                 if hasattr(x, "shape")))


def activation_bytes(config, batch_size: int, length: int) -> int:
  """~ what one train step keeps for the backward pass (float32): per layer the residual,
  attention in/out and MLP hidden per token, plus the attention matrices."""
  per_token = config.num_layers * (8 * config.d_model + 2 * config.mlp_dim)
  attention = config.num_layers * config.num_heads * length * length
  return int(4 * batch_size * (length * per_token + attention))


def describe(error: BaseException) -> str | None:
  failed = oom_error(error)
  if failed is None:
    return None
  local = crash_site.train_locals(error)
  names = {name for _, name, _ in crash_site.frames(error)}
  when = next((w for key, w in _WHEN if key in names), "on the device")
  step = crash_site.step_of(local)
  if when.endswith("train step") and step is not None:
    when += f" {step}"
  batch, length, config = local.get("batch_size"), local.get("length"), local.get("config")
  steps = local.get("steps")
  sizes = []
  if steps is not None and hasattr(steps, "abstract_state"):
    sizes.append(f"train state ~{write_errors.human_bytes(state_bytes(steps.abstract_state))} (params + optimizer)")
  if config is not None and isinstance(batch, int) and isinstance(length, int):
    sizes.append(f"activations ~{write_errors.human_bytes(activation_bytes(config, batch, length))} per step")
  asked = _ASKED.search(str(failed))
  if asked:
    sizes.append(f"XLA asked for {asked.group(1)}")
  devices = jax.device_count()
  smaller = f"a smaller --gin.BATCH_SIZE (now {batch}; try {batch // 2})" if isinstance(batch, int) and batch > 1 \
      else "a smaller --gin.BATCH_SIZE"
  return (f"out of device memory {when} with sharing={local.get('sharing', '?')} on {devices} device(s): "
          + ", ".join(sizes or ["size unknown"]) + f". Remedies: {smaller}; shorter "
          f"--gin.TASK_FEATURE_LENGTHS (now {length}); a smaller model (gin/models/); the model split over "
          "devices (--gin_file=gin/meshes/model_parallel_2.gin, or gin/meshes/task_parallel.gin for per-task "
          "towers/columns/experts); or less memory per step: --gin.EncoderConfig.remat_policy='full', "
          "--gin.microbatches.num=4, --gin.EncoderConfig.dtype='bfloat16', --gin_file=gin/meshes/fsdp.gin")
