"""input_pipeline.train_example_limit: a limited-data regime trains on a fixed uniform subset."""

import gin
import numpy as np
import pytest

from mtl_jax.input import input_pipeline as ip
from mtl_jax.data.word_vocab import WordVocabulary
from tasks import registration

VOCAB = WordVocabulary(300)
N = 120


@pytest.fixture(scope="module")
def task():
  # examples in corpus order: the first half all label 0 (a 'take the first N' subset would be one class)
  registration.add_task("toylimit", kind="classification", vocabulary=VOCAB, label_names=("a", "b"),
                        examples_fn=lambda split: [{"text": f"w{i}", "label": int(i >= N // 2)} for i in range(N)])
  return ip.get_provider("toylimit")


def _seen(provider, seed, limit, subset_seed=None, batches=40):
  gin.clear_config()
  gin.bind_parameter("input_pipeline.train_example_limit.limit", limit)
  gin.bind_parameter("input_pipeline.train_example_limit.subset_seed", subset_seed)
  try:
    it = ip.train_batches(provider, {"inputs": 4}, 8, seed)
    rows = [next(it) for _ in range(batches)]
  finally:
    gin.clear_config()
  words = np.concatenate([b["input_ids"][:, 0] for b in rows])  # one word per example
  labels = np.concatenate([b["label"] for b in rows])
  return words, labels


def test_a_limit_repeats_one_uniform_subset(task):
  words, labels = _seen(task, seed=3, limit=10)
  assert len(np.unique(words)) == 10  # 320 rows drawn from exactly 10 examples
  assert set(labels.tolist()) == {0, 1}  # drawn from the whole split, not its first rows
  counts = np.unique(words, return_counts=True)[1]
  assert counts.min() == counts.max() == 32  # every epoch visits each example once
  again, _ = _seen(task, seed=3, limit=10)
  np.testing.assert_array_equal(words, again)
  other_seed, _ = _seen(task, seed=4, limit=10)  # subset follows the run seed by default
  assert set(np.unique(other_seed)) != set(np.unique(words))
  fixed_a, _ = _seen(task, seed=3, limit=10, subset_seed=0)
  fixed_b, _ = _seen(task, seed=4, limit=10, subset_seed=0)
  assert set(np.unique(fixed_a)) == set(np.unique(fixed_b))  # a pinned subset, other order
  assert not np.array_equal(fixed_a, fixed_b)


def test_no_limit_sees_the_whole_split_and_bad_limits_are_named(task):
  words, _ = _seen(task, seed=3, limit=None)
  assert len(np.unique(words)) == N
  with pytest.raises(ValueError, match="limit must be None or an int >= 1, got 0"):
    _seen(task, seed=3, limit=0)
