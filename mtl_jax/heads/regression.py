"""Regression: squared error of the first pooled output against 'score'."""

from mtl_jax.heads.base import HeadKind


class Regression(HeadKind):
  name = "regression"

  def example_loss(self, out, batch):
    return (out.pooled_logits[:, 0] - batch["score"]) ** 2

  def predict(self, out):
    return out.pooled_logits[:, 0]

  def metric_pair(self, prediction, example, label_names):
    return float(example["score"]), float(prediction)
