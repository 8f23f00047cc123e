"""Mixing rates (every strategy, gin-selected) and realised proportions of the stream."""

import numpy as np
import pytest

from mtl_jax.input import input_pipeline as ip
from mtl_jax.input import mixing, mixing_monitor
from mtl_jax import train as train_lib
from mtl_jax.data.word_vocab import WordVocabulary
from tasks import registration

VOCAB = WordVocabulary(200)
SIZES = {"toymix_a": 100, "toymix_b": 400, "toymix_c": 1600}
LENGTHS = {"inputs": 8}


def _examples(task_index, n, split):
  n = n if split == "train" else 20
  return [{"text": f"w{task_index} w{i // 200} w{i % 200}", "label": i % 2} for i in range(n)]


@pytest.fixture(scope="module")
def toy():
  for t, (name, n) in enumerate(sorted(SIZES.items())):
    registration.add_task(name, kind="classification", vocabulary=VOCAB, label_names=("a", "b"),
                          examples_fn=lambda split, t=t, n=n: _examples(t, n, split))
  registration.add_mixture("toymix", [(n, mixing.proportional(maximum=800)) for n in sorted(SIZES)])
  return ip.get_provider("toymix")


pytestmark = pytest.mark.usefixtures("clean_gin")  # conftest: gin cleared around every test


def _norm(d):
  total = sum(d.values())
  return {k: v / total for k, v in d.items()}


def test_strategies(toy):
  n = {k: float(v) for k, v in SIZES.items()}
  assert mixing.rates(toy) == pytest.approx(_norm({k: min(v, 800) for k, v in n.items()}))
  assert mixing.rates(toy, "proportional") == pytest.approx(_norm(n))
  assert mixing.rates(toy, "proportional", maximum=400) == pytest.approx(_norm({k: min(v, 400) for k, v in n.items()}))
  assert mixing.rates(toy, "temperature", temperature=2.0) == pytest.approx(_norm({k: v ** 0.5 for k, v in n.items()}))
  assert mixing.rates(toy, "equal") == pytest.approx({k: 1 / 3 for k in n})
  w = {"toymix_a": 3, "toymix_b": 1, "toymix_c": 0}
  assert mixing.rates(toy, "explicit", weights=w) == pytest.approx({"toymix_a": .75, "toymix_b": .25, "toymix_c": 0})
  assert list(mixing.rates(toy)) == sorted(SIZES)  # task_id order
  assert mixing.rates(ip.get_provider("toymix_b")) == {"toymix_b": 1.0}


def test_bad_rate_choices(toy):
  with pytest.raises(ValueError, match="strategy"):
    mixing.rates(toy, "bogus")
  with pytest.raises(ValueError, match=r"missing \['toymix_c'\]"):
    mixing.rates(toy, "explicit", weights={"toymix_a": 1, "toymix_b": 1})
  with pytest.raises(ValueError, match="not all 0"):
    mixing.rates(toy, "explicit", weights={k: 0 for k in SIZES})
  with pytest.raises(ValueError, match="temperature"):
    mixing.proportional(temperature=0)


@pytest.mark.parametrize("gin_file", ["proportional", "temperature", "equal"])
def test_gin_files_select_rates(toy, gin_file):
  train_lib.parse_gin([f"gin/mixing/{gin_file}.gin"], [])
  expected = {"proportional": mixing.rates(toy, "proportional", maximum=2 ** 19),
              "temperature": mixing.rates(toy, "temperature", temperature=2.0, maximum=2 ** 21),
              "equal": mixing.rates(toy, "equal")}[gin_file]
  assert mixing.rates(toy) == pytest.approx(expected)
  assert mixing.intended_proportions(toy) == pytest.approx(expected)


def _realised(provider, batches=125, batch_size=32):
  monitor = ip.MixingMonitor.from_provider(provider)
  it = ip.train_batches(provider, LENGTHS, batch_size, seed=3)
  for _ in range(batches):
    monitor.update(next(it))
  return monitor


@pytest.mark.parametrize("bindings", [[], ["mixing.rates.strategy = 'equal'"],
                                      ["mixing.rates.strategy = 'temperature'",
                                       "mixing.rates.temperature = 2.0"]])
def test_realised_proportions_match_rates(toy, bindings):
  """4000 sampled examples: every task within 4 binomial sigmas of its rate."""
  train_lib.parse_gin([], bindings)
  monitor = _realised(toy)
  s = monitor.scalars()
  assert s["mixing/examples"] == 4000
  assert s["mixing/max_abs_z"] < 4.0, s
  assert s["mixing/total_variation"] < 0.03, s
  for name, p in mixing.rates(toy).items():
    assert s[f"mixing/intended/{name}"] == pytest.approx(p)
    assert abs(s[f"mixing/realised/{name}"] - p) < 4 * np.sqrt(p * (1 - p) / 4000) + 1e-9


@pytest.mark.parametrize("packed", [False, True])
def test_pipeline_options_leave_the_stream_unchanged(toy, packed):
  """_deterministic fuses maps and turns the autotuner off for speed: the batches stay those of plain
  deterministic tf.data, element for element (mixed rates, shuffles, packing)."""
  import gin
  import tensorflow as tf
  if packed:
    gin.bind_parameter("packing.enabled", True)
  fast = ip.train_batches(toy, LENGTHS, 12, seed=3, layout="mixed")
  options = tf.data.Options()
  options.deterministic = True
  plain = ip.mixed_dataset(toy, LENGTHS, 12, 3).with_options(options).as_numpy_iterator()
  for _ in range(60):
    a, b = next(fast), next(plain)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
  assert ("segment_ids" in a) == packed


def test_monitor_flags_wrong_rates(toy):
  monitor = mixing_monitor.MixingMonitor(sorted(SIZES), {"toymix_a": .1, "toymix_b": .1, "toymix_c": .8})
  monitor.update({"task_id": np.array([0, 1, 2] * 300), "weight": np.ones(900)})
  assert monitor.max_abs_z() > 10
  monitor.update({"task_id": np.array([[0, 0], [1, 1], [2, 2]]), "weight": np.zeros((3, 2))})
  assert monitor.total == 900  # weight-0 rows are not counted


def test_monitor_says_packed_counts_are_rows(toy):
  monitor = mixing_monitor.MixingMonitor(sorted(SIZES), {n: 1 / 3 for n in SIZES})
  monitor.update({"task_id": np.array([0, 1, 2]), "weight": np.ones(3)})
  assert monitor.unit == "examples"
  # a packed batch: 3 rows holding 2 + 3 + 1 examples (weight = each row's example count)
  monitor.update({"task_id": np.array([0, 1, 2]), "weight": np.array([2., 3., 1.]),
                  "segment_weight": np.array([[1., 1., 0.], [1., 1., 1.], [1., 0., 0.]])})
  assert monitor.unit == "packed rows" and monitor.total == 6  # rows, as the rates and schedule count


def test_grouped_layout_equal_slots(toy):
  assert mixing.intended_proportions(toy, "grouped") == pytest.approx({k: 1 / 3 for k in SIZES})
  it = ip.train_batches(toy, LENGTHS, 12, seed=0, layout="grouped")
  batch = next(it)
  assert batch["input_ids"].shape == (3, 4, 8) and batch["task_id"].shape == (3, 4)
  np.testing.assert_array_equal(batch["task_id"], np.repeat(np.arange(3)[:, None], 4, axis=1))
  flat = ip.flatten_grouped(batch)
  assert flat["input_ids"].shape == (12, 8)
  assert (np.diff(flat["task_id"]) >= 0).all()  # sorted: static group sizes
  # the first token of a toy example is w<task index>: rows really come from their task
  np.testing.assert_array_equal(flat["input_ids"][:, 0] - 2, flat["task_id"])
  with pytest.raises(ValueError, match="layout"):
    ip.train_batches(toy, LENGTHS, 12, seed=0, layout="sideways")
