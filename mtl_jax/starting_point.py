"""Where a run's parameters start: from scratch, or from a pretrained checkpoint.

The trainer asks its starting point three things and nothing else: the encoder's
architecture (`encoder_config`), the initial state (`init_state`, used only when
there is no checkpoint of the run itself to resume), and what to record in
run_spec.json (`record`), so that resuming with another starting point is refused.
Chosen by gin: `pretrained.checkpoint` set -> FromPretrained (gin/pretrained/*.gin).
"""

from __future__ import annotations

import dataclasses
import logging

from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.pretrained import checkpoint as checkpoint_lib
from mtl_jax.pretrained import load, settings, store

log = logging.getLogger("mtl_jax")


class Scratch:
  """A fresh encoder of the gin-bound EncoderConfig size."""

  record = None

  def encoder_config(self, vocab_size: int) -> EncoderConfig:
    return dataclasses.replace(EncoderConfig(), vocab_size=vocab_size)

  def init_state(self, steps):
    return steps.init_state()


class FromPretrained:
  """The checkpoint's architecture and weights in every trunk copy; new heads."""

  def __init__(self, options: settings.Pretrained):
    self.options = options
    self.checkpoint = checkpoint_lib.open_checkpoint(store.resolve(options.checkpoint))

  @property
  def record(self) -> dict:
    return {"checkpoint": str(self.checkpoint.path), "sha256": self.checkpoint.sha256()}

  def encoder_config(self, vocab_size: int) -> EncoderConfig:
    config = self.checkpoint.encoder_config(self.options.dropout_rate, self.options.pooling)
    if vocab_size > config.vocab_size:
      raise ValueError(f"the run's vocabulary has {vocab_size} ids but checkpoint {self.checkpoint.path} embeds "
                       f"{config.vocab_size}; the tasks must use the checkpoint's tokenizer")
    log.info("architecture from %s (gin-bound EncoderConfig sizes are not used): %s", self.checkpoint.path, config)
    return config

  def init_state(self, steps):
    state = steps.init_state()
    params = load.into_params(state.params, self.checkpoint.params(), self.options.expert_noise, steps.seed)
    return state.replace(params=params)


def for_run():
  """The starting point gin configures for this run."""
  options = settings.current()
  return FromPretrained(options) if options.checkpoint else Scratch()
