"""Mixed precision: which dtype activations and matmuls run in, and where float32 stays.

`EncoderConfig.dtype` ('float32' default, 'bfloat16') is the compute dtype of the
embeddings' output, attention and MLP matmuls and the residual stream;
`EncoderConfig.param_dtype` (float32) is what parameters, their gradients and the
optimizer state are stored in. Kept in float32 whatever `dtype` says, because bf16's
8-bit mantissa loses them: attention softmax statistics (logits are cast up before the
max / sum), LayerNorm statistics and output before the cast back, the heads and losses
(MultiTaskModel casts the trunk's output to float32), penalties and the optimizer.
"""

from __future__ import annotations

import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def check(field: str, name) -> None:
  if name not in DTYPES:
    raise ValueError(f"EncoderConfig.{field} must be one of {tuple(DTYPES)}, got {name!r}")


def dtype(name: str):
  """'bfloat16' -> jnp.bfloat16 (names, not dtypes, live in the config: run_spec.json is JSON)."""
  check("dtype", name)
  return DTYPES[name]
