"""Token tagging: word tags land on each word's first sub-token, -1 elsewhere; metrics see one tag per word."""

import numpy as np
import pytest

from mtl_jax import heads
from mtl_jax.input import input_pipeline as ip
from mtl_jax.data import corpora
from tasks import offline, registration

VOCAB = offline.VOCABULARY
WORDS = ["Pneumonoultramicroscopicsilicovolcanoconiosis", "is", "@justinbieber", "#hashtagging",
         "a", "Zzyzx", "!"]
TAGS = [1, 0, 2, 3, 0, 5, 0]


@pytest.fixture(scope="module")
def toytag():
  examples = [{"tokens": WORDS, "tags": TAGS}, {"tokens": ["New", "York"], "tags": [1, 11]}]
  registration.add_task("toytag", kind="tagging", vocabulary=VOCAB, label_names=corpora.WNUT_TAGS,
                        examples_fn=lambda split: examples)
  return ip.get_provider("toytag")


def _expected(words, tags):
  """Per sub-token: the word's tag on its first piece, -1 on the others."""
  out = []
  for w, t in zip(words, tags):
    n = len(VOCAB.encode(w))
    assert n >= 1
    out += [t] + [-1] * (n - 1)
  return out


def test_first_subtoken_carries_the_tag(toytag):
  expected = _expected(WORDS, TAGS)
  assert len(expected) > len(WORDS)  # the long words really split into several pieces
  batch = ip.eval_batches(toytag, ("toytag",), {"inputs": 64}, 2)[0]
  n = len(expected)
  np.testing.assert_array_equal(batch["tags"][0, :n], expected)
  assert batch["input_ids"][0, n] == 1 and batch["tags"][0, n] == -1  # EOS: no tag
  assert (batch["tags"][0, n + 1:] == -1).all() and (batch["input_ids"][0, n + 1:] == 0).all()
  pieces = np.concatenate([VOCAB.encode(w) for w in WORDS])
  np.testing.assert_array_equal(batch["input_ids"][0, :n], pieces)  # ids align with the tags


def test_truncation_keeps_alignment_and_untagged_eos(toytag):
  expected = _expected(WORDS, TAGS)
  # cut so that EOS replaces a word-start sub-token (whose tag must not leak onto EOS)
  length = max(k for k, t in enumerate(expected) if t >= 0 and k < len(expected) - 1) + 1
  batch = ip.eval_batches(toytag, ("toytag",), {"inputs": length}, 2)[0]
  assert batch["input_ids"][0, -1] == 1 and batch["tags"][0, -1] == -1
  np.testing.assert_array_equal(batch["tags"][0, :-1], expected[:length - 1])


def test_metric_sees_one_tag_per_word(toytag):
  batch = ip.eval_batches(toytag, ("toytag",), {"inputs": 64}, 2)[0]
  head = heads.KINDS["tagging"]
  example = {k: v[0] for k, v in batch.items()}
  gold, pred = head.metric_pair(np.zeros_like(example["tags"]), example, corpora.WNUT_TAGS)
  assert gold == [corpora.WNUT_TAGS[t] for t in TAGS]
  assert len(pred) == len(WORDS) and set(pred) == {"O"}


def test_wnut_validation_alignment_every_example():
  """Every validation tweet (none truncated at 128): its labelled positions are its words, in order."""
  task = ip.get_provider("wnut16_ner")
  words = offline.examples("wnut16_ner", "validation")
  batches = ip.eval_batches(task, ("wnut16_ner",), {"inputs": 128}, 64)
  rows = [(b["tags"][i], b["input_ids"][i]) for b in batches for i in np.flatnonzero(b["weight"] > 0)]
  assert len(rows) == len(words) == 222
  for (tags, ids), ex in zip(rows, words):
    assert tags[tags >= 0].tolist() == ex["tags"]
    eos = int(np.flatnonzero(ids == 1)[0])
    assert tags[eos] == -1 and (tags[eos:] == -1).all()
    assert tags[0] >= 0  # the first sub-token is always a word start


def test_wnut_train_batch_labels_only_real_tokens():
  batch = next(ip.train_batches(ip.get_provider("wnut16_ner"), {"inputs": 64}, 32, seed=0))
  labelled = batch["tags"] >= 0
  assert labelled.sum() > 32 * 5
  assert (batch["input_mask"][labelled] == 1).all()
  assert (batch["input_ids"][labelled] != 1).all()  # never on EOS
  assert batch["tags"].max() < len(corpora.WNUT_TAGS)
  assert (batch["tags"][labelled] > 0).any()  # some entity tags, not only 'O'
