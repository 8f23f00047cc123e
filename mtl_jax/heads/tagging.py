"""Token tagging: cross-entropy per labelled sub-token (tags >= 0), padding ignored."""

import jax.numpy as jnp
import numpy as np
import optax

from mtl_jax.heads.base import HeadKind


class Tagging(HeadKind):
  name = "tagging"

  def example_loss(self, out, batch):
    tags = batch["tags"]
    labelled = (tags >= 0).astype(out.token_logits.dtype)
    ce = optax.softmax_cross_entropy_with_integer_labels(out.token_logits, jnp.maximum(tags, 0))
    return (ce * labelled).sum(-1) / jnp.maximum(labelled.sum(-1), 1.0)

  def predict(self, out):
    return jnp.argmax(out.token_logits, axis=-1)

  def metric_pair(self, prediction, example, label_names):
    keep = np.asarray(example["tags"]) >= 0
    gold = [label_names[t] for t in np.asarray(example["tags"])[keep]]
    pred = [label_names[p] for p in np.asarray(prediction)[keep]]
    return gold, pred
