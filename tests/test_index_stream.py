"""input/index_stream.py: in-memory tasks' train stream as permuted row indices gives the tf.data
pipeline's batches byte for byte (every task kind it takes, resumes, several epochs), and the runs it
cannot take keep the tf.data pipeline."""

import gin
import numpy as np
import pytest

from mtl_jax.data import corpora
from mtl_jax.data.word_vocab import WordVocabulary
from mtl_jax.input import index_stream, input_pipeline as ip, mixing
from tasks import registration

VOCAB = WordVocabulary(300)
LENGTHS = {"inputs": 12}
pytestmark = pytest.mark.usefixtures("clean_gin")  # conftest: gin cleared around every test


def _words(i: int, n: int) -> str:
  return " ".join(f"w{(i * 7 + k) % 290}" for k in range(1 + i % n))  # 1..n words: some cut at 12 tokens


@pytest.fixture(scope="module")
def providers():
  """Sizes that do not divide the batch, so batches straddle epochs; every kind index streams take."""
  registration.add_task("ix_cls", kind="classification", vocabulary=VOCAB, label_names=("a", "b", "c"),
                        examples_fn=lambda split: [{"text": _words(i, 15), "label": i % 3} for i in range(37)])
  registration.add_task("ix_reg", kind="regression", vocabulary=VOCAB,
                        examples_fn=lambda split: [{"text": _words(i, 9), "score": i / 23} for i in range(23)])
  registration.add_task("ix_pair", kind="classification", vocabulary=VOCAB, label_names=("no", "yes"),
                        text_fields=("premise", "hypothesis"),
                        examples_fn=lambda split: [{"text": "x", "texts": [_words(i, 7), _words(i + 3, 8)], "label": i % 2}
                                                   for i in range(29)])
  registration.add_task("ix_tag", kind="tagging", vocabulary=VOCAB, label_names=corpora.WNUT_TAGS,
                        examples_fn=lambda split: [{"tokens": _words(i, 14).split(),
                                                    "tags": [(i + k) % 5 for k in range(1 + i % 14)]}
                                                   for i in range(19)])
  registration.add_task("ix_choice", kind="multiple_choice", vocabulary=VOCAB, label_names=("c1", "c2", "c3"),
                        examples_fn=lambda split: [{"text": _words(i, 6), "choices": [_words(i + 1, 2), _words(i + 2, 3)],
                                                    "label": i % 2} for i in range(17)])
  registration.add_mixture("ix_mix", [("ix_cls", mixing.proportional()), ("ix_reg", mixing.proportional()),
                                      ("ix_pair", mixing.proportional())])
  return {name: ip.get_provider(name) for name in ("ix_mix", "ix_cls", "ix_tag", "ix_choice")}


def _batches(provider, seed: int, start: int, n: int, fast: bool) -> list[dict]:
  gin.bind_parameter("index_stream.enabled.value", fast)
  it = ip.train_batches(provider, LENGTHS, 8, seed, start_batch=start)
  return [next(it) for _ in range(n)]


@pytest.mark.parametrize("name", ["ix_mix", "ix_cls", "ix_tag", "ix_choice"])
@pytest.mark.parametrize("seed,start", [(0, 0), (5, 13)])
def test_index_stream_equals_the_tfdata_stream(providers, name, seed, start):
  provider = providers[name]
  assert index_stream.train_batches(provider, ip.task_names(provider), LENGTHS, 8, seed, start, None,
                                    ip.derive_seed) is not None, "this run should take the index stream"
  fast, slow = _batches(provider, seed, start, 40, True), _batches(provider, seed, start, 40, False)
  for i, (a, b) in enumerate(zip(fast, slow)):  # 40 batches of 8: several epochs of every task
    assert list(a) == list(b)
    for k in b:
      assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (i, k)
      np.testing.assert_array_equal(a[k], b[k], err_msg=f"batch {i} feature {k}")


def test_each_call_restarts_the_same_stream(providers):
  """A second iterator (a resumed run, another lane) starts from the first epoch's permutation again."""
  first, second = (_batches(providers["ix_mix"], 3, 0, 12, True) for _ in range(2))
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
  other = _batches(providers["ix_mix"], 4, 0, 12, True)
  assert any(not np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, other))


def test_runs_it_cannot_take_keep_the_tfdata_pipeline(providers):
  args = (ip.task_names(providers["ix_cls"]), LENGTHS, 8, 0, 0, None, ip.derive_seed)
  assert index_stream.train_batches(providers["ix_cls"], *args) is not None
  gin.bind_parameter("packing.enabled", True)  # packing regroups the converted stream
  assert index_stream.train_batches(providers["ix_cls"], *args) is None
  gin.clear_config()
  assert index_stream.train_batches(providers["ix_cls"], *args, example_limit=10) is None  # limited data
  gin.clear_config()
  gin.bind_parameter("index_stream.enabled.value", False)
  assert index_stream.train_batches(providers["ix_cls"], *args) is None
  gin.clear_config()
  import seqio
  sharded = seqio.ShardInfo(index=0, num_shards=2)
  assert index_stream.train_batches(providers["ix_cls"], args[0], LENGTHS, 8, 0, 0, sharded, ip.derive_seed) is None


def test_a_source_without_the_whole_split_permutation_is_not_indexed():
  """Only sources that declare it (registration.add_task's) are indexed: a multi-label group is not."""
  import tasks.multilabel  # noqa: F401  registers vader_multilabel (its own InMemorySource)
  provider = ip.get_provider("vader_multilabel")
  assert not provider.source.permutes_whole_split
  assert index_stream.train_batches(provider, ip.task_names(provider), LENGTHS, 8, 0, 0, None,
                                    ip.derive_seed) is None


def test_bad_setting_is_one_line():
  gin.bind_parameter("index_stream.enabled.value", "yes")
  with pytest.raises(ValueError, match=r"index_stream.enabled.value must be True or False, got 'yes'"):
    index_stream.enabled()
