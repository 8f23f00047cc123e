"""TextEmb = per text the numpy mean of its real tokens' final-layer states (each text encoded alone, no padding),
then the mean over texts (Vu et al.'s run_textemb_CR.py); the former per-token mean as an option."""

import dataclasses

import flax.linen as nn
import jax
import numpy as np

from mtl_jax.models.multitask import build_model
from mtl_jax.pretrained import encode
from mtl_jax.probe import featurize
from mtl_jax.taskemb import textemb
from mtl_jax.transfer import init_from
from tests.helpers import NUM_CLASSES, TINY, fixed_batch


def _featurizer(config):
  model = build_model(config, "hard", NUM_CLASSES)
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(3), fixed_batch())["params"])
  weights = init_from.plain_encoder(params, {"sharing": "hard", "tasks": ["a", "b", "c"]})
  return featurize.Featurizer("tiny", config, weights, None, "tiny test trunk"), weights


def test_textemb_pools_each_text_first_then_averages_texts_and_token_pooling_is_the_option():
  config = dataclasses.replace(TINY, norm="post", dropout_rate=0.0, pooling="cls")  # cls: TextEmb still means
  feat, weights = _featurizer(config)
  batch = fixed_batch(batch_size=10, length=12, seed=5)
  lengths = batch["input_mask"].sum(1)
  assert lengths.min() < 12  # some texts are padded
  states = []
  for ids, n in zip(batch["input_ids"], lengths):  # each text alone, at its own length
    hidden = encode._forward(config, encode.encoder_params(weights), ids[None, :n], np.ones((1, n), np.int32))
    states.append(np.asarray(hidden[0], np.float64))
  per_text = np.mean([s.mean(axis=0) for s in states], axis=0)  # each text's mean, then over texts
  halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
  got = textemb.text_mean(feat, halves)
  assert got["pooling"] == "example" and got["tokens"] == int(lengths.sum()) and got["examples"] == 10
  assert got["mean"].shape == (config.num_layers + 1, config.d_model)
  np.testing.assert_allclose(got["mean"][-1], per_text, rtol=1e-4, atol=1e-5)
  per_token = np.concatenate(states).mean(axis=0)  # every real token counts once: long texts weigh more
  token = textemb.token_mean(feat, halves)
  np.testing.assert_allclose(token["mean"][-1], per_token, rtol=1e-4, atol=1e-5)
  assert not np.allclose(per_token, per_text, atol=1e-4)
  import pytest
  with pytest.raises(ValueError, match="pooling='cls'"):
    textemb.text_mean(feat, halves, "cls")
