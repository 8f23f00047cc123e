"""gin evaluation.max_examples: a smoke run scores each split's first N examples (the same examples, in the
same order, as the full evaluation's first N), counts truncation over those, says so once, and refuses a
bad value with the fix."""

import gin
import numpy as np
import pytest
import seqio

import tasks.offline  # noqa: F401  (registers the offline tasks)
from mtl_jax.input import truncation
from mtl_jax.step import evaluation

TASK, LENGTHS, BATCH = "rotten_tomatoes", {"inputs": 16}, 64


def _rows(batches):
  """The real (weight > 0) rows of padded batches, concatenated per feature."""
  keep = [np.flatnonzero(b["weight"] > 0) for b in batches]
  return {k: np.concatenate([b[k][r] for b, r in zip(batches, keep)]) for k in batches[0]}


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "64"])
def test_a_bad_cap_names_the_value_and_the_fix(value, clean_gin):
  gin.bind_parameter("evaluation.max_examples.value", value)
  with pytest.raises(ValueError, match=r"evaluation\.max_examples\.value must be an int >= 1 or None.*" +
                     repr(value).replace(".", r"\.")):
    evaluation.max_examples()


def test_capped_evaluation_scores_the_first_examples_and_says_so_once(clean_gin, capsys):
  full = evaluation.Evaluator([TASK], LENGTHS, BATCH)
  assert evaluation.max_examples_note() is None and "max_examples" not in capsys.readouterr().out
  gin.bind_parameter("evaluation.max_examples.value", 100)
  capped = evaluation.Evaluator([TASK], LENGTHS, BATCH)
  held_out = evaluation.Evaluator([TASK], LENGTHS, BATCH, splits=lambda t: ("test",), main_split="test")
  out = capsys.readouterr().out
  assert out.count("evaluation.max_examples.value=100") == 1, out  # the test evaluator stays quiet
  want, got = _rows(full.batches[TASK, "validation"]), _rows(capped.batches[TASK, "validation"])
  assert len(want["weight"]) == 658 and len(got["weight"]) == 100
  for key in want:
    np.testing.assert_array_equal(got[key], want[key][:100], err_msg=key)
  assert len(_rows(held_out.batches[TASK, "test"])["weight"]) == 100

  def predict(batch):  # any fixed prediction: the record must count the capped examples only
    return {"classification": np.zeros(len(batch["weight"]), np.int32)}
  record = capped.evaluate(predict)
  assert record["tasks"][TASK]["num_examples"] == 100


def test_truncation_counts_cover_the_capped_examples():
  task = seqio.get_mixture_or_task(TASK)
  ds = task.get_dataset(sequence_length=None, split="validation", shuffle=False, num_epochs=1,
                        trim_output_features=False, try_in_mem_cache=False)
  lengths = [len(ex["inputs"]) for ex in ds.as_numpy_iterator()]
  cut = sum(n > 16 for n in lengths[:50])
  assert 0 < cut < 50  # the check can tell a capped count from the full one
  assert truncation.counts([TASK], 16, max_examples=50) == {TASK: {"validation": (cut, 50)}}
  assert truncation.counts([TASK], 16) == {TASK: {"validation": (sum(n > 16 for n in lengths), len(lengths))}}
