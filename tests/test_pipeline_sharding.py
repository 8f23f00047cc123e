"""Multi-host input: each process's shard is disjoint from the others and together they cover the data."""

import numpy as np
import pytest
import seqio

import tasks.offline  # noqa: F401  registers rotten_tomatoes
from mtl_jax.input import input_pipeline as ip
from mtl_jax.data.word_vocab import WordVocabulary
from tasks import registration

VOCAB = WordVocabulary(200)
LENGTHS = {"inputs": 4}


@pytest.fixture(scope="module")
def toy():
  for t, n in enumerate((40, 400, 400)):
    registration.add_task(
        f"toyshard_{t}", kind="classification", vocabulary=VOCAB, label_names=("a", "b"),
        examples_fn=lambda split, t=t, n=n: [{"text": f"w{t} w{i // 200} w{i % 200}", "label": i % 2}
                                             for i in range(n)])
  registration.add_mixture("toyshard", [("toyshard_1", 1.0), ("toyshard_2", 1.0)])


def _ids(batches):
  """(task token, example index) of every row."""
  rows = np.concatenate([b["input_ids"].reshape(-1, b["input_ids"].shape[-1]) for b in batches])
  return [(int(r[0]), int((r[1] - 2) * 200 + r[2] - 2)) for r in rows]


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_two_shards_of_the_train_stream_partition_each_epoch(toy):
  task = ip.get_provider("toyshard_0")
  shards = [_take(ip.train_batches(task, LENGTHS, 4, seed=1, shard_info=seqio.ShardInfo(i, 2)), 10)
            for i in range(2)]
  for epoch in range(2):  # 5 batches of 4 = one epoch of a 20-example shard
    a, b = (set(_ids(s[epoch * 5:(epoch + 1) * 5])) for s in shards)
    assert len(a) == len(b) == 20
    assert not a & b
    assert {i for _, i in a | b} == set(range(40))


def test_mixed_stream_shards_disjoint_and_sampled_independently(toy):
  provider = ip.get_provider("toyshard")
  streams = [_take(ip.train_batches(provider, LENGTHS, 8, seed=1, shard_info=seqio.ShardInfo(i, 2)), 20)
             for i in range(2)]
  ids = [_ids(s) for s in streams]
  # 160 rows per shard, < 200 (one shard-epoch of each task): no example twice anywhere
  assert len(set(ids[0])) == len(ids[0]) == 160 and len(set(ids[1])) == 160
  assert not set(ids[0]) & set(ids[1])
  tid = [np.concatenate([b["task_id"] for b in s]) for s in streams]
  assert not np.array_equal(tid[0], tid[1])  # hosts do not draw the same task sequence


def test_grouped_layout_shards_disjoint(toy):
  provider = ip.get_provider("toyshard")
  ids = [_ids(_take(ip.train_batches(provider, LENGTHS, 8, seed=2, layout="grouped",
                                     shard_info=seqio.ShardInfo(i, 2)), 10)) for i in range(2)]
  assert len(set(ids[0])) == len(set(ids[1])) == 80
  assert not set(ids[0]) & set(ids[1])


def test_real_task_shards_cover_the_train_split():
  task = ip.get_provider("rotten_tomatoes")
  parts = []
  for i in range(2):
    ds = task.get_dataset(sequence_length=None, split="train", shuffle=True, seed=7, num_epochs=1,
                          shard_info=seqio.ShardInfo(i, 2), try_in_mem_cache=False)
    parts.append([tuple(ex["inputs"].tolist()) for ex in ds.as_numpy_iterator()])
  full = task.get_dataset(sequence_length=None, split="train", shuffle=False, num_epochs=1,
                          try_in_mem_cache=False)
  everything = sorted(tuple(ex["inputs"].tolist()) for ex in full.as_numpy_iterator())
  assert abs(len(parts[0]) - len(parts[1])) <= 1
  assert sorted(parts[0] + parts[1]) == everything  # disjoint and covering, as multisets
