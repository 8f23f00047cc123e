"""Rematerialisation (activation checkpointing) policies for one transformer layer.

`EncoderConfig.remat_policy` wraps every TransformerLayer of every strategy (hard
trunk, soft towers, sluice / cross-stitch columns, MMoE experts) in `nn.remat`, so the
backward pass recomputes what the policy does not save instead of keeping every
layer's intermediates alive: memory then grows with the layer inputs, not with the
attention matrices and MLP activations of all layers.
  'none'           save everything (default, fastest, most memory)
  'full'           save only each layer's input; recompute the layer in the backward pass (~+1/3 FLOPs)
  'dots_saveable'  keep matmul outputs, recompute the cheap elementwise ops (softmax, GELU, LayerNorm)
  'dots_with_no_batch_dims_saveable'  keep only weight matmuls (not the [B,H,L,L] attention products)
"""

from __future__ import annotations

import jax

POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def check(name) -> None:
  if name not in POLICIES:
    raise ValueError(f"EncoderConfig.remat_policy must be one of {tuple(POLICIES)}, got {name!r}")


def wrap(module_cls, name: str, static_argnums=(3,), prevent_cse: bool = True):
  """module_cls, or its nn.remat version under policy `name` (argnum 0 is self; 3 = deterministic)."""
  import flax.linen as nn
  check(name)
  if name == "none":
    return module_cls
  return nn.remat(module_cls, policy=POLICIES[name], static_argnums=static_argnums, prevent_cse=prevent_cse)
