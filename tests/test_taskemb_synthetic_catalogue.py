"""The synthetic catalogue plants the relations it says, the oracle recovers them, Random sits at its
expectation and DataSize is not right by construction -- all without training."""

import numpy as np
import pytest
from scipy import stats as sps

from mtl_jax.data import synthetic_catalogue as cat
from mtl_jax.taskemb import ranking

NAMES = cat.task_names()
GRID = cat.Grid()


def _truth_from(matrix, names=NAMES):
  i = {n: k for k, n in enumerate(names)}
  return {t: {s: float(matrix[i[t], i[s]]) for s in GRID.sources} for t in GRID.targets}


def test_directions_realise_the_planted_overlap_exactly():
  d = cat.directions()
  assert d.shape == (24, cat.LATENT_DIM) and len(set(NAMES)) == 24
  np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
  overlap = cat.planted_overlap(NAMES)
  np.testing.assert_allclose(d @ d.T, overlap, atol=1e-12)
  f0m1, f0m2, f1m0, f2m0 = (cat.index(n) for n in ("syncat_f0_m1", "syncat_f0_m2", "syncat_f1_m0", "syncat_f2_m0"))
  assert overlap[f0m1, f0m2] == pytest.approx(np.sqrt(0.7 * 0.5))            # same family
  assert overlap[f0m1, f1m0] == pytest.approx(0.3 * np.sqrt(0.7 * 0.9))      # same super-family
  assert overlap[f0m1, f2m0] == 0.0
  with pytest.raises(ValueError, match="'syncat_f9_m0' is not a catalogue task"):
    cat.parse("syncat_f9_m0")


def test_oracle_recovers_the_measured_label_agreement_ordering():
  """Truth measured from the generated labels (agreement on 20,000 shared inputs), oracle = planted overlap."""
  agreement = cat.label_agreement(NAMES)
  # 1 - arccos(rho) / pi for x ~ N(0, I) and median thresholds; within sampling error (se ~ 0.0035)
  expected = 1 - np.arccos(np.clip(cat.planted_overlap(NAMES), -1, 1)) / np.pi
  assert np.abs(agreement - expected).max() < 0.03
  truth = _truth_from(agreement)
  oracle = _truth_from(cat.planted_overlap(NAMES))
  scores = ranking.score(oracle, truth, ks=(1, 3))
  assert scores["ndcg_vu"] > 0.999 and scores["ndcg@1"] == 1.0 and scores["ndcg@3"] > 0.99
  assert scores["rank_of_best"] == 1.0 and scores["regret@1"] == 0.0
  assert len(GRID.targets) >= 10 and all(len(truth[t]) >= 10 for t in GRID.targets)


def test_random_sits_at_its_closed_form_expectation_and_datasize_is_not_the_oracle():
  truth = _truth_from(cat.label_agreement(NAMES))
  sources_of = {t: list(v) for t, v in truth.items()}
  expected = {k: np.mean([ranking.expected_random(truth[t], (1, 3))[k] for t in truth])
              for k in ("ndcg@1", "ndcg@3", "ndcg_vu", "regret@1", "rank_of_best")}
  draws = [ranking.score(ranking.random_scores(sources_of, seed), truth, (1, 3)) for seed in range(300)]
  for key, want in expected.items():
    values = np.array([d[key] for d in draws])
    assert abs(values.mean() - want) < 4 * values.std(ddof=1) / np.sqrt(len(values)), key
  assert expected["rank_of_best"] == 5.5  # (10 candidates + 1) / 2
  sizes = {n: cat.train_size(n) for n in NAMES}
  datasize = ranking.score(ranking.data_size(sizes, sources_of), truth, (1, 3))
  assert datasize["ndcg@1"] < 0.6 and datasize["rank_of_best"] > 2.5
  rho = [sps.spearmanr([sizes[s] for s in GRID.sources], [truth[t][s] for s in GRID.sources]).statistic
         for t in GRID.targets]
  assert abs(np.mean(rho)) < 0.3  # size tells nothing about the planted relation on average


def test_generated_splits_have_their_sizes_balanced_labels_and_no_shared_text():
  name = "syncat_f2_m3"
  train, val = cat.generate(name, "train"), cat.generate(name, "validation")
  assert len(train) == cat.train_size(name) and len(val) == cat.EVAL_EXAMPLES
  assert 0.4 < np.mean([e["label"] for e in train]) < 0.6
  assert not {e["text"] for e in train} & {e["text"] for e in val}
  assert cat.generate(name, "train") == train  # deterministic
  assert sorted(set(cat.train_size(n) for n in NAMES)) == list(cat.SIZES)


def test_the_equal_rate_mixture_holds_every_task_at_one_rate():
  """syncat_equal (gin/taskemb/affinity_syncat.gin): TAG affinity needs every pair of tasks in some batch,
  which rates by size (syncat_all: 200 vs 3,200 examples) did not give in 150 steps."""
  import seqio
  import tasks.synthetic_catalogue as registered
  mixture = seqio.get_mixture_or_task(registered.EQUAL)
  names = sorted(t.name for t in mixture.tasks)
  assert names == sorted(cat.task_names())
  rates = {mixture.get_rate(t) for t in mixture.tasks}
  assert rates == {1.0}
  sizes = seqio.get_mixture_or_task(registered.ALL)
  assert len({round(sizes.get_rate(t), 6) for t in sizes.tasks}) > 1  # the other mixture is not equal-rate
