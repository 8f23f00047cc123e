"""Where a run's parameters start: from scratch, or from a pretrained checkpoint.

The trainer asks its starting point three things and nothing else: the encoder's
architecture (`encoder_config`), the initial state (`init_state`, used only when
there is no checkpoint of the run itself to resume), and what to record in
run_spec.json (`record`: spec entries), so that resuming with another starting point is refused.
Chosen by gin: `init_from.model_dir` set -> FromRun (another run's trunk, mtl_jax/transfer/init_from.py);
else `pretrained.checkpoint` set -> FromPretrained (gin/pretrained/*.gin); else Scratch.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.pretrained import checkpoint as checkpoint_lib
from mtl_jax.pretrained import load, settings, store
from mtl_jax.run import seeds_in_step
from mtl_jax.transfer import init_from

log = logging.getLogger("mtl_jax")


class Scratch:
  """A fresh encoder of the gin-bound EncoderConfig size."""

  record = {"pretrained": None}

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
    return {"pretrained": {"checkpoint": str(self.checkpoint.path), "sha256": self.checkpoint.sha256()}}

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


class FromRun:
  """Another run's trunk (one task's tower / column, an expert, or their mean) in every trunk
  copy of this run, with the source's architecture; new heads for this run's tasks."""

  def __init__(self, options: init_from.InitFrom, pretrained: settings.Pretrained):
    self.options = options
    self.model_dir = pathlib.Path(options.model_dir).absolute()
    self.spec = init_from.read_spec(self.model_dir)
    source_weights = (self.spec.get("pretrained") or {}).get("sha256")
    mine = FromPretrained(pretrained).record["pretrained"] if pretrained.checkpoint else None
    if (mine or {}).get("sha256") != source_weights:  # the tasks must tokenize as the source's did
      theirs = (self.spec.get("pretrained") or {}).get("checkpoint")
      fix = (f"set pretrained.checkpoint={theirs} (e.g. include its gin/pretrained/*.gin file)" if theirs
             else "drop pretrained.checkpoint (the source was trained from scratch)")
      raise ValueError(f"init_from.model_dir {str(self.model_dir)!r} was started from "
                       f"{theirs or 'scratch'} but this run from {(mine or {}).get('checkpoint', 'scratch')}: "
                       f"its tokenizer differs; {fix}")
    self.pretrained = mine
    self._flat = self._step = None

  def _load(self):
    if self._flat is None:
      params, self._step = init_from.restore_params(self.model_dir, self.options.step)
      self._flat = init_from.plain_encoder(params, self.spec, self.options.task)
    return self._flat

  @property
  def record(self) -> dict:
    flat = self._load()
    return {"pretrained": self.pretrained,
            "init_from": {"model_dir": str(self.model_dir), "step": self._step, "task": self.options.task,
                          "sharing": self.spec["sharing"], "tasks": self.spec["tasks"],
                          "sha256": init_from.fingerprint(flat)}}

  def encoder_config(self, vocab_size: int) -> EncoderConfig:
    config = init_from.encoder_config(self.spec)
    if vocab_size != config.vocab_size and not self.pretrained:
      raise ValueError(f"the run's vocabulary has {vocab_size} ids but init_from.model_dir {str(self.model_dir)!r} "
                       f"embeds {config.vocab_size}: the tasks must use the source run's vocabulary")
    log.info("architecture from %s/run_spec.json: %s", self.model_dir, config)
    return config

  def init_state(self, steps):
    state = steps.init_state()
    params = init_from.into_params(state.params, self._load(), self.options.expert_noise, steps.seed)
    return state.replace(params=params)


def for_run(seed: int | None = None):
  """The starting point gin configures for this run. An init_from.model_dir holding '{seed}' is this
  run's seed's source (trainer.train.seeds: each lane starts from its own seed's source run)."""
  options, source = settings.current(), init_from.current()
  if (lane_source := seeds_in_step.lane_init_from()) is not None:  # a lane with its own run (lanes.init_from)
    source = dataclasses.replace(source, model_dir=lane_source)
  if source.model_dir and "{seed}" in str(source.model_dir):
    if seed is None:
      raise ValueError(f"init_from.model_dir {source.model_dir!r} holds '{{seed}}' but this command has no seed "
                       "to fill in; give the source run's directory itself")
    source = dataclasses.replace(source, model_dir=str(source.model_dir).replace("{seed}", str(seed)))
  if source.model_dir:
    return FromRun(source, options)
  return FromPretrained(options) if options.checkpoint else Scratch()
