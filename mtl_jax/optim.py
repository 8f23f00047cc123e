"""Optimizer: global-norm clipping + AdamW on a warmup-cosine schedule (optax).

Weight decay skips vectors (biases, LayerNorm scales) via an ndim mask.
"""

import gin
import jax
import optax


@gin.configurable
def make_optimizer(total_steps: int, learning_rate: float = 1e-3, warmup_steps: int = 50,
                   end_learning_rate_fraction: float = 0.1, weight_decay: float = 0.01,
                   clip_norm: float = 1.0, b1: float = 0.9, b2: float = 0.98):
  if learning_rate <= 0:
    raise ValueError(f"make_optimizer.learning_rate must be > 0, got {learning_rate}")
  warmup = max(0, min(warmup_steps, total_steps - 1))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, warmup_steps=warmup, decay_steps=max(total_steps, warmup + 1),
      end_value=learning_rate * end_learning_rate_fraction)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  return optax.chain(
      optax.clip_by_global_norm(clip_norm),
      optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask)), schedule
