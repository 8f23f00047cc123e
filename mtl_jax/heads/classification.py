"""Sentence classification: softmax cross-entropy on the pooled logits."""

import jax.numpy as jnp
import optax

from mtl_jax.heads.base import HeadKind


class Classification(HeadKind):
  name = "classification"

  def example_loss(self, out, batch):
    return optax.softmax_cross_entropy_with_integer_labels(out.pooled_logits, batch["label"])

  def predict(self, out):
    return jnp.argmax(out.pooled_logits, axis=-1)

  def metric_pair(self, prediction, example, label_names):
    return int(example["label"]), int(prediction)
