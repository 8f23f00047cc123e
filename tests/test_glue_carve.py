"""GLUE / SuperGLUE under tfds.testing.mock_data: 'train' and 'validation' (the dev split) are the two
sides of the fixed hash carve of TFDS train (disjoint, together exactly TFDS train, the same on every
read, each example on the side mtl_jax/data/splits.carved_split puts its text), and 'test' is TFDS
validation, which the held-out evaluation (run/held_out.py) now reads."""

import collections

import pytest
import tensorflow_datasets as tfds

import tasks.glue as glue
from mtl_jax.data import splits
from mtl_jax.input import input_pipeline as ip
from mtl_jax.run import held_out

TASKS = {"glue_rte": ("glue/rte:2.0.0", ("sentence1", "sentence2")),
         "glue_cola": ("glue/cola:2.0.0", ("sentence",)),
         "super_glue_copa_mc": ("super_glue/copa:1.0.2", ("premise", "question", "choice1", "choice2"))}


def _key(ex, fields) -> str:
  text = lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v)
  return text(ex[fields[0]]) if len(fields) == 1 else " ".join(f"{f}: {text(ex[f])}" for f in fields)


def _keys(ds, fields) -> collections.Counter:
  return collections.Counter((_key(ex, fields), int(ex["label"])) for ex in tfds.as_numpy(ds))


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
  with tfds.testing.mock_data(num_examples=60, data_dir=str(tmp_path_factory.mktemp("tfds"))):
    yield


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_carve_is_disjoint_deterministic_and_covers_train(mock, name):
  tfds_name, fields = TASKS[name]
  source = ip.get_provider(name).source
  raw = list(tfds.as_numpy(tfds.load(tfds_name, split="train", shuffle_files=False)))
  assert len(raw) == 60
  want = {side: collections.Counter((_key(ex, fields), int(ex["label"])) for ex in raw
                                    if splits.carved_split(_key(ex, fields)) == side) for side in ("train", "validation")}
  got = {side: _keys(source.get_dataset(side, shuffle=False), fields) for side in ("train", "validation")}
  assert got == want  # each example on the side its text hashes to
  assert got["train"] + got["validation"] == collections.Counter((_key(e, fields), int(e["label"])) for e in raw)
  assert not set(got["train"]) & set(got["validation"])  # disjoint
  assert 0 < sum(got["validation"].values()) < 60 / 2  # ~10 % dev
  assert _keys(source.get_dataset("validation", shuffle=True, seed=3), fields) == got["validation"]  # any read
  test = list(tfds.as_numpy(tfds.load(tfds_name, split="validation", shuffle_files=False)))
  assert _keys(source.get_dataset("test", shuffle=False), fields) == collections.Counter(
      (_key(e, fields), int(e["label"])) for e in test)
  assert source.num_input_examples("train") is None and source.num_input_examples("validation") is None


def test_every_glue_task_has_a_test_split_for_the_held_out_score(mock):
  names = glue.glue_task_names() + glue.super_glue_task_names() + ["super_glue_copa_mc"]
  for name in names:
    assert set(ip.get_provider(name).splits) >= {"train", "validation", "test"} and held_out._has_test(name), name
    assert ip.get_provider(name).source.split_map["test"] == ("validation_matched" if name == "glue_mnli"
                                                               else "validation"), name
  mnli = ip.get_provider("glue_mnli")
  assert ip.eval_splits(mnli) == ("validation", "validation_mismatched")
  assert mnli.source.split_map == {"train": "train", "validation": "train", "test": "validation_matched",
                                   "validation_mismatched": "validation_mismatched"}


def test_carved_split_rule():
  texts = [f"sentence number {i}" for i in range(4000)]
  sides = [splits.carved_split(t) for t in texts]
  assert sides == [splits.carved_split(t) for t in texts]
  assert 0.08 < sides.count("validation") / len(texts) < 0.12
  assert splits.carved_split("  The  Cat ") == splits.carved_split("the cat")  # normalised text decides
  assert sum(splits.carved_split(t, 30) == "validation" for t in texts) > 2 * sides.count("validation")
  with pytest.raises(ValueError, match="dev_percent must be an int in 1..99, got 0"):
    splits.carved_split("x", 0)
