"""The synthetic benchmark as registered seqio tasks: cheap registration, word vocabulary,
and the relatedness knob measured on what the pipeline actually emits."""

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import tasks.synthetic as syn_tasks
from mtl_jax.input import input_pipeline as ip
from mtl_jax.input import mixing, task_info
from mtl_jax.data import synthetic as syn

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = syn_tasks.VOCABULARY


def test_all_grid_mixtures_registered():
  assert len(syn_tasks.MIXTURES) == 15
  for r in syn.STANDARD_GRID["relatedness"]:
    for t in syn.STANDARD_GRID["num_tasks"]:
      provider = ip.get_provider(syn.mixture_name(r, t))
      assert ip.task_names(provider) == tuple(sorted(syn.task_names(r, t)))
      assert task_info.get(syn.task_name(r, t, 0)).num_classes == 2
  assert mixing.rates(ip.get_provider("synthetic_r25_t8")) == pytest.approx(
      {n: 1 / 8 for n in syn.task_names(0.25, 8)})


def test_registration_generates_nothing():
  code = ("import tasks.synthetic\nfrom mtl_jax.data import synthetic as s\n"
          "print(s._split_sequences.cache_info().currsize, s._build_model.cache_info().currsize, "
          "s._calibration_latents.cache_info().currsize)")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["0", "0", "0"]


def test_word_vocabulary():
  assert VOCAB.vocab_size == 200 + 3
  assert VOCAB.encode("w0 w17 w199") == [2, 19, 201]
  assert VOCAB.encode("w200 hello") == [VOCAB.unk_id] * 2
  assert VOCAB.decode([2, 19, 201, 1, 0]) == "w0 w17 w199"
  assert VOCAB.eos_id == 1 and VOCAB.pad_id == 0


def _emitted(name, split):
  """(token ids, labels) of a split as the pipeline emits it (eval path, in order)."""
  task = ip.get_provider(name)
  batches = ip.eval_batches(task, (name,), {"inputs": 32}, 250, split=split)
  seqs, labels = [], []
  for b in batches:
    for i in np.flatnonzero(b["weight"] > 0):
      ids = b["input_ids"][i][b["input_mask"][i] > 0]
      assert ids[-1] == 1  # EOS, never truncated at 32
      seqs.append((ids[:-1] - 2).tolist())
      labels.append(int(b["label"][i]))
  return seqs, np.array(labels)


def test_pipeline_emits_the_generator_examples():
  cfg = syn_tasks.config(0.5, 2)
  seqs, labels = _emitted("synthetic_r50_t2_task1", "validation")
  gen = syn.generate(cfg, 1, "validation")
  assert seqs == [e["token_ids"] for e in gen]
  assert labels.tolist() == [e["label"] for e in gen]
  assert 0.4 < labels.mean() < 0.6


def _bow(seqs):
  x = np.zeros((len(seqs), 200))
  for i, s in enumerate(seqs):
    np.add.at(x[i], s, 1.0)
  return x


def test_relatedness_knob_through_registered_tasks():
  """Agreement between task 0's labelling and task 1's labels on task 1's emitted inputs,
  and cross-task transfer of a bag-of-words classifier, both rise with r."""
  agreement, transfer = {}, {}
  for r in syn.STANDARD_GRID["relatedness"]:
    cfg = syn_tasks.config(r, 2)
    seqs1, labels1 = _emitted(syn.task_name(r, 2, 1), "validation")
    agreement[r] = float((syn.labels_for_token_ids(cfg, 0, seqs1) == labels1).mean())
    seqs0, labels0 = _emitted(syn.task_name(r, 2, 0), "train")
    clf = LogisticRegression(max_iter=2000).fit(_bow(seqs0), labels0)
    transfer[r] = float(clf.score(_bow(seqs1), labels1))
  print("agreement", agreement, "transfer", transfer)
  assert agreement[1.0] == 1.0
  assert abs(agreement[0.0] - 0.5) < 0.15
  assert all(agreement[a] < agreement[b] for a, b in zip((0.0, 0.25, 0.5), (0.5, 0.75, 1.0)))
  assert transfer[1.0] > 0.8 and abs(transfer[0.0] - 0.5) < 0.15
  assert transfer[0.0] < transfer[0.5] < transfer[1.0]


def test_train_batches_both_layouts():
  provider = ip.get_provider("synthetic_r50_t8")
  mixed = next(ip.train_batches(provider, {"inputs": 32}, 64, seed=0))
  assert mixed["input_ids"].shape == (64, 32) and len(np.unique(mixed["task_id"])) == 8
  grouped = next(ip.train_batches(provider, {"inputs": 32}, 64, seed=0, layout="grouped"))
  assert grouped["input_ids"].shape == (8, 8, 32)
  np.testing.assert_array_equal(grouped["task_id"][:, 0], np.arange(8))
