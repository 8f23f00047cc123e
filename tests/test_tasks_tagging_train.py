"""A tagging task trains end to end through the binary's main (in-process, one device: the process
boundary is test_train_binary's): loss falls, span F1 is reported."""

import json

import numpy as np
import tensorflow as tf

from conftest import ONE_DEVICE, run_main
import pytest


def _scalars(logdir, tag):
  out = {}
  for path in tf.io.gfile.glob(f"{logdir}/events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag == tag:
          out[event.step] = float(tf.make_ndarray(v.tensor)) if v.HasField("tensor") else v.simple_value
  return out


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_wnut16_ner_trains(tmp_path, clean_gin):
  run_main("--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
           "--gin.MIXTURE_OR_TASK_NAME=wnut16_ner", f"--gin.MODEL_DIR={tmp_path}",
           "--gin.TRAIN_STEPS=40", ONE_DEVICE)
  results = json.loads((tmp_path / "results.json").read_text())
  wnut = results["tasks"]["wnut16_ner"]
  assert results["step"] == 40
  assert {"span_f1", "span_precision", "span_recall", "token_accuracy"} <= set(wnut)
  assert 0.0 <= wnut["span_f1"] <= 1.0 and wnut["headline"] == wnut["span_f1"]
  assert wnut["num_examples"] == 222  # one metric entry per validation tweet
  assert wnut["token_accuracy"] > 0.8  # at least the majority 'O' tag is learnt
  loss = _scalars(tmp_path / "train", "loss")
  assert sorted(loss) == [10, 20, 30, 40], loss
  assert np.isfinite(list(loss.values())).all()
  assert loss[40] < 0.5 * loss[10], loss
