"""Multi-label (partially labelled) inputs: one row per (input, labelled task), the step's
loss equal to the per-task masked losses computed by hand, the grouped layout, weighting
methods, evaluation masks, intended rates, and the offline demonstration training."""

import dataclasses

import gin
import jax
import numpy as np
import optax
import pytest

from helpers import TINY
from mtl_jax.step import evaluation
from mtl_jax.input import input_pipeline as ip, mixing, multilabel
from mtl_jax.scale import partitioning
from mtl_jax import weighting
from mtl_jax.data.word_vocab import WordVocabulary
from mtl_jax.models.multitask import build_model
from mtl_jax.step.steps import Steps
from tasks import multilabel as ml_tasks
from tasks import registration
from conftest import ONE_DEVICE

VOCAB = WordVocabulary(40)
LENGTHS = {"inputs": 8}
MEMBERS = ("mlt_cls", "mlt_reg")  # sorted: task_id 0, 1


def _labels(i):
  labels = {}
  if i % 3 != 2:
    labels["mlt_cls"] = i % 2
  if i % 3 != 1:
    labels["mlt_reg"] = (i % 7) / 7.0 - 0.4
  return labels


def _examples(split):
  n = 30 if split == "train" else 9
  off = 0 if split == "train" else 100
  return [{"text": f"w{(i + off) % 37} w{(3 * i + off) % 37} w{(i // 5) % 37}", "labels": _labels(i + off)}
          for i in range(n)]


@pytest.fixture(scope="module")
def group():
  ml_tasks.add_multilabel_task("mlt_group", examples_fn=_examples, vocabulary=VOCAB,
                               members={"mlt_cls": ("classification", ("no", "yes")), "mlt_reg": ("regression", ())})
  registration.add_task("mlt_plain", kind="classification", vocabulary=VOCAB, label_names=("a", "b"),
                        examples_fn=lambda split: [{"text": f"w{i}", "label": i % 2} for i in range(20)])
  registration.add_mixture("mlt_mix", [("mlt_group", 1.0)])
  registration.add_mixture("mlt_plus", [("mlt_group", 1.0), ("mlt_plain", 1.0)])
  return ip.get_provider("mlt_mix")


pytestmark = pytest.mark.usefixtures("clean_gin")


def test_run_tasks_are_the_members(group):
  assert ip.task_names(group) == MEMBERS
  assert ip.task_names(ip.get_provider("mlt_plus")) == ("mlt_cls", "mlt_plain", "mlt_reg")


def _key(row_ids):
  return tuple(int(x) for x in row_ids if x)


def test_one_epoch_has_a_row_per_label_adjacent(group):
  expected = {}
  for ex in _examples("train"):
    ids = tuple(VOCAB.encode(ex["text"])) + (1,)
    for m, v in ex["labels"].items():
      expected[ids, m] = v
  rows = sum(len(ex["labels"]) for ex in _examples("train"))
  assert rows == 40
  batch = next(ip.train_batches(group, LENGTHS, rows, seed=1))  # one epoch exactly
  got = {}
  for r in range(rows):
    name = MEMBERS[batch["task_id"][r]]
    got[_key(batch["input_ids"][r]), name] = (batch["label"][r] if name == "mlt_cls" else batch["score"][r])
  assert got.keys() == expected.keys()  # every label once, no row for a missing label
  for k, v in expected.items():
    assert got[k] == pytest.approx(v)
  # an input's rows are adjacent
  keys = [_key(x) for x in batch["input_ids"]]
  for k in set(keys):
    where = [i for i, x in enumerate(keys) if x == k]
    assert where == list(range(where[0], where[0] + len(where)))


CONFIG = dataclasses.replace(TINY, vocab_size=40, num_layers=1, dropout_rate=0.0)


def _steps(method="equal", grouped=False, batch=12, kinds=("classification", "regression"), classes=(2, 1)):
  model = build_model(CONFIG, "hard", list(classes))
  w = weighting.base.build(method, len(kinds))
  w.rep_grad = False
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  return Steps(model, optax.sgd(0.0), kinds, mesh, partitioning.logical_axis_rules(), 0, batch, 8,
               grouped=grouped, weighting=w)


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("method", ["equal", "examples"])
def test_batch_loss_is_the_sum_of_per_task_masked_losses_by_hand(group, method):
  batch = next(ip.train_batches(group, LENGTHS, 12, seed=2))
  steps = _steps(method)
  state = steps.init_state()
  # the model's outputs once per distinct input, then every task's loss on every input by hand
  inputs = {}
  for r in range(12):
    inputs.setdefault(_key(batch["input_ids"][r]), r)
  by_input = {ex_key: {} for ex_key in inputs}
  for r in range(12):
    name = MEMBERS[batch["task_id"][r]]
    by_input[_key(batch["input_ids"][r])][name] = batch["label"][r] if name == "mlt_cls" else batch["score"][r]
  out = steps.model.apply({"params": state.params}, jax.tree.map(np.asarray, batch), deterministic=True)
  logits = np.asarray(out.pooled_logits, np.float64)
  total = {m: [] for m in MEMBERS}
  for key, labels in by_input.items():
    for m, v in labels.items():  # a missing label contributes nothing (masked)
      row = next(r for r in range(12) if _key(batch["input_ids"][r]) == key and MEMBERS[batch["task_id"][r]] == m)
      if m == "mlt_cls":
        total[m].append(-_log_softmax(logits[row, :2])[int(v)])
      else:
        total[m].append((logits[row, 0] - v) ** 2)
  means = np.array([np.mean(total[m]) for m in MEMBERS])
  counts = np.array([len(total[m]) for m in MEMBERS], float)
  want = means.mean() if method == "equal" else (means * counts).sum() / counts.sum()
  _, metrics = steps.run_train_step(state, batch)
  np.testing.assert_allclose(np.asarray(metrics["task_loss"]), means, rtol=2e-5)
  np.testing.assert_array_equal(np.asarray(metrics["task_count"]), counts)
  assert float(metrics["loss"]) == pytest.approx(want, rel=2e-5)
  assert counts.sum() == 12 and len(by_input) < 12  # some inputs carry two labels in this batch


def test_grouped_layout_fills_each_member_slot_and_gradient_methods_run(group):
  batch = next(ip.train_batches(group, LENGTHS, 8, seed=0, layout="grouped"))
  assert batch["task_id"].shape == (2, 4) and (batch["task_id"] == np.arange(2)[:, None]).all()
  cls_inputs = {tuple(VOCAB.encode(e["text"])) + (1,) for e in _examples("train") if "mlt_cls" in e["labels"]}
  assert all(_key(r) in cls_inputs for r in batch["input_ids"][0])  # only inputs labelled for the slot's task
  steps = _steps("pcgrad", grouped=True, batch=8)
  state, metrics = steps.run_train_step(steps.init_state(), ip.flatten_grouped(batch))
  assert np.isfinite(float(metrics["loss"])) and (np.asarray(metrics["task_count"]) == 4).all()


def test_intended_rates_split_the_group_by_label_counts(group):
  counts = {m: sum(m in e["labels"] for e in _examples("train")) for m in MEMBERS}  # 20 cls, 20 reg
  assert multilabel.row_shares("mlt_group") == {m: c / 40 for m, c in counts.items()}
  got = mixing.intended_proportions(ip.get_provider("mlt_plus"))
  assert got == pytest.approx({"mlt_cls": 0.25, "mlt_plain": 0.5, "mlt_reg": 0.25})
  gin.bind_parameter("mixing.rates.strategy", "proportional")  # group size = its rows (40), plain 20
  got = mixing.intended_proportions(ip.get_provider("mlt_plus"))
  assert got == pytest.approx({"mlt_cls": 1 / 3, "mlt_plain": 1 / 3, "mlt_reg": 1 / 3})


def test_evaluation_scores_each_member_on_its_labelled_inputs_only(group):
  ev = evaluation.Evaluator(MEMBERS, LENGTHS, 4)
  record = ev.evaluate(evaluation.constant_predictor(MEMBERS))
  val = _examples("validation")
  for m in MEMBERS:
    assert record["tasks"][m]["num_examples"] == sum(m in e["labels"] for e in val)


def test_tagging_member_and_unlabelled_input_refused():
  with pytest.raises(ValueError, match="not sentence-level"):
    ml_tasks.add_multilabel_task("mlt_bad", examples_fn=_examples, vocabulary=VOCAB,
                                 members={"mlt_bad_tag": ("tagging", ("O", "B"))})
  ml_tasks.add_multilabel_task("mlt_empty", vocabulary=VOCAB, members={"mlt_e1": ("regression", ())},
                               examples_fn=lambda s: [{"text": "w1", "labels": {}}])
  with pytest.raises(ValueError, match="has no label for any of"):
    next(ip.train_batches(ip.get_provider("mlt_empty"), LENGTHS, 1, seed=0))


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_offline_demonstration_trains(tmp_path):
  from mtl_jax import train
  rc = train.main(["--gin_file=gin/runs/multilabel_vader.gin", "--gin_file=gin/models/tiny.gin",
                       f"--gin.MODEL_DIR={tmp_path}", "--gin.TRAIN_STEPS=4", "--gin.BATCH_SIZE=16",
                       "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}", "--gin.trainer.train.eval_period=4",
                       "--no_progress", ONE_DEVICE])
  assert rc == 0
  import json
  record = json.loads((tmp_path / "results.json").read_text())
  assert set(record["tasks"]) == {"vader_ml_polarity", "vader_ml_valence"}
  val = ml_tasks._vader_multilabel("validation")
  for m in record["tasks"]:
    assert record["tasks"][m]["num_examples"] == sum(m in e["labels"] for e in val)
  kinds = {len(e["labels"]) for e in ml_tasks._vader_multilabel("train")}
  assert kinds == {1, 2}  # partially labelled: single- and double-labelled inputs
