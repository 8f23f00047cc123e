"""GLUE / SuperGLUE tasks build offline under tfds.testing.mock_data and share the common schema.

mock_data (policy AUTO) works without dataset metadata: no dataset_info.json ships
for glue/super_glue in tfds 4.9.10, so TFDS generates random examples from the
builder's feature spec and split sizes are unknown (TfdsSource returns None).
"""

import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tasks.glue as glue
from mtl_jax.heads import multiple_choice
from mtl_jax.input import input_pipeline as ip
from mtl_jax.step import metrics as M
from mtl_jax.input import mixing, task_info
from mtl_jax.input.features import MODEL_FEATURES
from tasks import registration

ALL = glue.glue_task_names() + glue.super_glue_task_names()
LENGTHS = {"inputs": 48}


@pytest.fixture
def mock(tmp_path):
  with tfds.testing.mock_data(num_examples=6, data_dir=str(tmp_path)):
    yield


def test_catalogue():
  assert len(glue.glue_task_names()) == 9 and len(glue.super_glue_task_names()) == 7
  assert task_info.get("glue_stsb").kind == "regression"
  assert task_info.get("glue_mnli").num_classes == 3 and task_info.get("super_glue_cb").num_classes == 3
  assert ip.eval_splits(ip.get_provider("glue_mnli")) == ("validation", "validation_mismatched")
  assert ip.eval_splits(ip.get_provider("glue_cola")) == ("validation",)
  assert M.mcc in ip.get_provider("glue_cola").metric_fns
  assert M.f1_binary in ip.get_provider("glue_qqp").metric_fns
  assert ip.task_names(ip.get_provider("glue")) == tuple(sorted(glue.glue_task_names()))
  # hidden TFDS test labels: 'test' is TFDS validation, the dev split is carved from train (test_glue_carve.py)
  assert ip.get_provider("glue_rte").source.split_map == {"train": "train", "validation": "train", "test": "validation"}


def test_label_names_match_tfds_feature_spec():
  """Static label names (no data needed) agree with the TFDS builders."""
  for name in ALL:
    task = ip.get_provider(name)
    builder = tfds.builder(task.source.tfds_dataset.name)
    label = builder.info.features["label"]
    if task_info.get(name).kind == "regression":
      assert not hasattr(label, "names")
    else:
      assert tuple(label.names) == task_info.get(name).label_names, name


def test_every_task_yields_eval_batches(mock):
  for name in ALL:
    task = ip.get_provider(name)
    info = task_info.get(name)
    for split in ip.eval_splits(task)[1:] + ("test",):  # 'validation': a carve of 6 mock examples, maybe none
      batches = ip.eval_batches(task, ALL, LENGTHS, 4, split=split)
      assert sum(int(b["weight"].sum()) for b in batches) == 6, (name, split)
      b = batches[0]
      assert set(b) == set(MODEL_FEATURES) and b["input_ids"].shape == (4, 48)
      assert (b["task_id"] == ALL.index(name)).all()
      assert (b["tags"] == -1).all()
      if info.kind == "regression":
        assert (b["label"] == 0).all() and 0.0 <= b["score"].min() and b["score"].max() <= 1.0
      else:
        assert ((0 <= b["label"]) & (b["label"] < info.num_classes)).all() and (b["score"] == 0).all()
      text = task.output_features["inputs"].vocabulary.decode(b["input_ids"][0].tolist())
      fields = (glue.GLUE[name[5:]] if name.startswith("glue_") else glue.SUPER_GLUE[name[11:]][1])
      if len(fields) == 2:  # a native pair (from scratch): a </s> b </s>, segments 0 then 1
        n, eos = int(b["input_mask"][0].sum()), task.output_features["inputs"].vocabulary.eos_id
        types, ids = b["token_type_ids"][0][:n], b["input_ids"][0][:n]
        first_b = int(np.argmax(types == 1)) if (types == 1).any() else n
        assert (types[:first_b] == 0).all() and (types[first_b:] == 1).all() and ids[n - 1] == eos, name
        assert ids[first_b - 1] == eos and first_b < n, (name, ids, types)
      elif len(fields) > 2:  # multi-field input: 'f1: ... f2: ...' in field order
        found = [re.search(rf"(^| ){re.escape(f)}: ", text) for f in fields]
        assert all(found), (name, text)
        positions = [m.start() for m in found]
        assert positions == sorted(positions), (name, text)


def test_mixture_train_batches(mock):
  # unknown split sizes under mock: counted (the train side of each task's carve of 6) -> proportional rates
  sizes = {n: sum(1 for _ in ip.get_provider(n).source.get_dataset("train", shuffle=False))
           for n in glue.glue_task_names()}
  assert mixing.rates(ip.get_provider("glue")) == pytest.approx({n: k / sum(sizes.values()) for n, k in sizes.items()})
  # a 3-task slice keeps the test fast (each TFDS task fills a 1000-example shuffle buffer)
  registration.add_mixture("glue_slice", [(n, 1.0) for n in ("glue_cola", "glue_mnli", "glue_stsb")])
  provider = ip.get_provider("glue_slice")
  it = ip.train_batches(provider, LENGTHS, 30, seed=0)
  batch = next(it)
  assert batch["input_ids"].shape == (30, 48) and len(np.unique(batch["task_id"])) == 3
  stsb = batch["task_id"] == ip.task_names(provider).index("glue_stsb")
  assert (batch["label"][stsb] == 0).all() and batch["score"][stsb].std() > 0
  del it


def test_glue_mixes_with_offline_tasks(mock):
  registration.add_mixture("glue_plus_offline", [("glue_rte", 1.0), ("rotten_tomatoes", 1.0)])
  provider = ip.get_provider("glue_plus_offline")
  it = ip.train_batches(provider, LENGTHS, 8, seed=0, layout="grouped")
  batch = next(it)
  assert batch["input_ids"].shape == (2, 4, 48)
  np.testing.assert_array_equal(batch["task_id"], [[0] * 4, [1] * 4])
  del it


def test_unprepared_data_is_an_error_not_a_download(tmp_path):
  source = registration.TfdsSource(tfds_name="glue/cola:2.0.0", tfds_data_dir=str(tmp_path),
                                   splits={"train": "train"})
  with pytest.raises(RuntimeError, match=r"not prepared.*tfds build glue/cola"):
    source.get_dataset("train", shuffle=False)
  assert not any(tmp_path.iterdir())  # nothing was downloaded or generated


def test_mnli_evaluates_matched_and_mismatched(mock):
  """The Evaluator scores both MNLI validation splits; mismatched under its own keys.

  A constant predictor (class 0) gives accuracy = share of label 0, computed here
  independently from the raw mock examples of each split."""
  from mtl_jax.step import evaluation
  names = ("glue_mnli",)
  evaluator = evaluation.Evaluator(names, LENGTHS, batch_size=4)
  record = evaluator.evaluate(lambda b: {"classification": np.zeros_like(b["task_id"])})
  scores = record["tasks"]["glue_mnli"]
  expected = {}
  for split in ("validation", "validation_mismatched"):
    labels = [int(ex["label"]) for ex in ip.get_provider("glue_mnli").source.get_dataset(split, shuffle=False)
              .as_numpy_iterator()]
    expected[split] = sum(l == 0 for l in labels) / len(labels)
  assert scores["accuracy"] == pytest.approx(expected["validation"])
  assert scores["validation_mismatched/accuracy"] == pytest.approx(expected["validation_mismatched"])
  assert scores["validation_mismatched/num_examples"] == 6
  assert record["average"] == scores["headline"]  # the extra split does not enter the average


def test_copa_as_multiple_choice(mock):
  """super_glue_copa_mc: a (context, choice) pair per choice, every token of pair i tagged pair_tag(i)."""
  names = ALL + ["super_glue_copa_mc"]
  task = ip.get_provider("super_glue_copa_mc")
  assert task_info.get("super_glue_copa_mc").kind == "multiple_choice"
  batches = ip.eval_batches(task, names, LENGTHS, 4, split="test")  # TFDS validation (the dev split is carved)
  assert sum(int(b["weight"].sum()) for b in batches) == 6
  vocab = task.output_features["inputs"].vocabulary
  for b in batches:
    for i in np.flatnonzero(b["weight"] > 0):
      tags, ids, n = b["tags"][i], b["input_ids"][i], int(b["input_mask"][i].sum())
      pair_tags = [multiple_choice.pair_tag(j) for j in range(2)]
      assert set(np.unique(tags[:n])) == set(pair_tags) and (tags[n:] == -1).all()
      assert 0 <= b["label"][i] < 2 and ids[n - 1] == vocab.eos_id
      for t in pair_tags:  # each pair: the joined context (type 0), then its choice (type 1)
        on = tags == t
        assert "premise:" in vocab.decode(ids[on & (b["token_type_ids"][i] == 0)].tolist())
        assert (b["token_type_ids"][i][on] == 1).any()
