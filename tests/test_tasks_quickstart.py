"""The quickstart mixture: registration, head info, and one batch's shapes and content."""

import numpy as np
import pytest

import tasks.offline  # noqa: F401  registers the offline tasks
from mtl_jax.input import input_pipeline, task_info
from mtl_jax.input.features import MODEL_FEATURES

LENGTHS = {"inputs": 32}


def test_quickstart_tasks_and_kinds():
  provider = input_pipeline.get_provider("quickstart")
  names = input_pipeline.task_names(provider)
  assert names == ("bbc_topic", "rotten_tomatoes", "vader_tweets")
  kinds = {n: task_info.get(n).kind for n in names}
  assert kinds == {"bbc_topic": "classification", "rotten_tomatoes": "classification",
                   "vader_tweets": "regression"}
  assert task_info.get("bbc_topic").num_classes == 5
  assert task_info.get("vader_tweets").num_classes == 1


def test_train_batch_shapes_dtypes_and_real_text():
  provider = input_pipeline.get_provider("quickstart")
  batch = next(input_pipeline.train_batches(provider, LENGTHS, batch_size=64, seed=0))
  assert set(batch) == set(MODEL_FEATURES)
  expect = {"input_ids": ((64, 32), np.int32), "input_mask": ((64, 32), np.int32),
            "task_id": ((64,), np.int32), "label": ((64,), np.int32), "score": ((64,), np.float32),
            "tags": ((64, 32), np.int32), "weight": ((64,), np.float32)}
  for key, (shape, dtype) in expect.items():
    assert batch[key].shape == shape and batch[key].dtype == dtype, key
  assert set(np.unique(batch["task_id"])) <= {0, 1, 2} and len(np.unique(batch["task_id"])) >= 2
  np.testing.assert_array_equal(batch["input_mask"], (batch["input_ids"] != 0).astype(np.int32))
  assert (batch["tags"] == -1).all()  # no tagging task here
  vader = batch["task_id"] == 2
  assert np.all(np.abs(batch["score"][vader]) <= 1.0) and np.std(batch["score"][vader]) > 0
  assert set(batch["label"][batch["task_id"] == 0]) <= set(range(5))
  vocab = provider.output_features["inputs"].vocabulary
  text = vocab.decode(batch["input_ids"][0][batch["input_mask"][0] > 0].tolist())
  assert sum(c.isalpha() for c in text) > 10, text


def test_unknown_task_name_error_suggests_close_names():
  with pytest.raises(ValueError, match=r"unknown task or mixture 'bbc_topik'.*'bbc_topic'"):
    input_pipeline.get_provider("bbc_topik")
