"""Source ranking scores (NDCG@k, Regret@k, rank of the best), similarity and task groups, by hand."""

import itertools

import numpy as np
import pytest

from mtl_jax.taskemb import groups, ranking, similarity

# target t: true scores a 0.8 > b 0.6 > c 0.5; target u: x 0.2 > y -0.1
TRUTH = {"t": {"a": 0.8, "b": 0.6, "c": 0.5}, "u": {"x": 0.2, "y": -0.1}}
PREDICTED = {"t": {"a": 0.2, "b": 0.9, "c": 0.1}, "u": {"x": 5.0, "y": 1.0}}  # order t: b, a, c; u: x, y


def test_metrics_on_a_hand_made_matrix_equal_hand_computed_values():
  order = ranking.ranking(PREDICTED["t"])
  assert order == ["b", "a", "c"]
  # relevance = score - worst: a .3, b .1, c 0
  assert ranking.ndcg_at(order, TRUTH["t"], 1) == pytest.approx(0.1 / 0.3)
  # DCG@3 = .1/log2(2) + .3/log2(3) + 0 = 0.289279; IDCG@3 = .3 + .1/log2(3) = 0.363093
  assert ranking.ndcg_at(order, TRUTH["t"], 3) == pytest.approx(0.289279 / 0.363093, abs=1e-6)
  assert ranking.regret_at(order, TRUTH["t"], 1) == pytest.approx((0.8 - 0.6) / 0.8)  # 0.25
  assert ranking.regret_at(order, TRUTH["t"], 2) == 0.0
  assert ranking.best_rank(order, TRUTH["t"]) == 2
  got = ranking.score(PREDICTED, TRUTH, ks=(1, 2))
  # u is ranked perfectly: NDCG 1, regret 0, rank 1
  assert got["ndcg@1"] == pytest.approx((1 / 3 + 1) / 2)
  # t @2: DCG = .1 + .3/log2(3), IDCG = .3 + .1/log2(3)
  assert got["ndcg@2"] == pytest.approx(((0.1 + 0.3 / np.log2(3)) / (0.3 + 0.1 / np.log2(3)) + 1) / 2)
  assert got["regret@1"] == pytest.approx(0.125) and got["regret@2"] == 0.0
  assert got["rank_of_best"] == 1.5  # Vu et al.'s rho: the average rank of the best source


def test_vu_ndcg_is_the_exponential_gain_over_the_full_list_by_hand():
  order = ["b", "a", "c"]  # gains 2^rel - 1 of b .6, a .8, c .5 at positions 1, 2, 3
  dcg = (2 ** 0.6 - 1) / 1 + (2 ** 0.8 - 1) / np.log2(3) + (2 ** 0.5 - 1) / 2
  idcg = (2 ** 0.8 - 1) / 1 + (2 ** 0.6 - 1) / np.log2(3) + (2 ** 0.5 - 1) / 2
  assert ranking.ndcg_vu(order, TRUTH["t"]) == pytest.approx(dcg / idcg)
  assert ranking.ndcg_vu(["a", "b", "c"], TRUTH["t"]) == pytest.approx(1.0)
  # u: x .2 first is ideal; reversed: ((2^-.1 - 1) + (2^.2 - 1)/log2 3) / ((2^.2 - 1) + (2^-.1 - 1)/log2 3)
  rev = ((2 ** -0.1 - 1) + (2 ** 0.2 - 1) / np.log2(3)) / ((2 ** 0.2 - 1) + (2 ** -0.1 - 1) / np.log2(3))
  assert ranking.ndcg_vu(["y", "x"], TRUTH["u"]) == pytest.approx(rev)
  got = ranking.score(PREDICTED, TRUTH, ks=(1,))
  assert got["ndcg_vu"] == pytest.approx((dcg / idcg + 1.0) / 2)


def test_random_expectation_in_closed_form_equals_enumerating_every_order():
  truth = {"a": 0.71, "b": 0.64, "c": 0.70, "d": 0.55, "e": 0.68}
  ks = (1, 2, 3)
  rows = [ranking.score({"t": dict(zip(perm, range(5, 0, -1)))}, {"t": truth}, ks)
          for perm in itertools.permutations(truth)]
  want = {key: np.mean([r[key] for r in rows]) for key in rows[0]}
  got = ranking.expected_random(truth, ks)
  assert set(got) == set(want)
  for key in want:
    assert got[key] == pytest.approx(want[key], rel=1e-12), key
  assert got["rank_of_best"] == 3.0


def test_bad_rankings_are_one_line_each():
  with pytest.raises(ValueError, match=r"target 'u' has 1 candidate source\(s\) \['x'\]: ranking needs >= 2"):
    ranking.score({"u": {"x": 1.0}}, {"u": {"x": 0.2}})
  with pytest.raises(ValueError, match=r"missing truth cells for source\(s\) \['y'\]"):
    ranking.score(PREDICTED, {"u": {"x": 0.2, "y": float("nan")}})
  with pytest.raises(ValueError, match="k=3 is larger than the 2 candidate sources of target 'u'; use --k <= 2"):
    ranking.score(PREDICTED, TRUTH, ks=(1, 3))


def test_truth_ties_mark_best_and_second_within_two_standard_errors():
  record = {"matrix": [
      {"source": "none", "target": "t", "regime": "n", "mean": 0.1, "std": 0.0, "n": 3},
      {"source": "a", "target": "t", "regime": "n", "mean": 0.50, "std": 0.03, "n": 3},
      {"source": "b", "target": "t", "regime": "n", "mean": 0.47, "std": 0.03, "n": 3},
      {"source": "c", "target": "t", "regime": "n", "mean": 0.20, "std": 0.03, "n": 3},
      {"source": "a", "target": "u", "regime": "n", "mean": 0.90, "std": 0.01, "n": 3},
      {"source": "b", "target": "u", "regime": "n", "mean": 0.70, "std": 0.01, "n": 3}]}
  ties = ranking.truth_ties(record, "n")
  se = np.sqrt(0.03 ** 2 / 3 + 0.03 ** 2 / 3)  # 0.0245: 0.03 < 2 se -> tie
  assert ties["t"]["best"] == "a" and ties["t"]["second"] == "b" and ties["t"]["se"] == pytest.approx(se)
  assert ties["t"]["tie"] is True and ties["u"]["tie"] is False
  one_seed = {"matrix": [dict(r, n=1) for r in record["matrix"]]}
  assert ranking.truth_ties(one_seed, "n")["t"]["tie"] is None


def test_matrix_lookups_and_baselines():
  names = ["a", "b", "c"]
  m = np.array([[1.0, 0.2, 0.3], [0.4, 1.0, 0.6], [0.7, 0.8, 1.0]])
  sources_of = {"a": ["b", "c"], "c": ["a", "b"]}
  assert ranking.from_matrix(names, m, sources_of) == {"a": {"b": 0.2, "c": 0.3}, "c": {"a": 0.7, "b": 0.8}}
  # affinity is Z[source, target]: predicted[target][source] = m[source, target]
  assert ranking.from_matrix(names, m, sources_of, transpose=True) == {"a": {"b": 0.4, "c": 0.7},
                                                                      "c": {"a": 0.3, "b": 0.6}}
  assert ranking.ranking(ranking.data_size({"a": 10, "b": 300, "c": 20}, sources_of)["c"]) == ["b", "a"]
  r1, r2 = ranking.random_scores(sources_of, 1), ranking.random_scores(sources_of, 1)
  assert r1 == r2 and r1 != ranking.random_scores(sources_of, 2)
  with pytest.raises(ValueError, match=r"task\(s\) \['z'\]"):
    ranking.from_matrix(names, m, {"z": ["a"]})
  with pytest.raises(ValueError, match="no predicted score for source"):
    ranking.score({"t": {"a": 1.0}}, TRUTH)


def test_truth_from_an_mtl_transfer_matrix():
  record = {"matrix": [{"source": "none", "target": "t", "regime": "n", "mean": 0.1},
                       {"source": "a", "target": "t", "regime": "n", "mean": 0.5},
                       {"source": "b", "target": "t", "regime": "n", "mean": 0.7}],
            "cells": [{"source": "a", "target": "t", "regime": "n", "seed": 1, "score": 0.4}]}
  assert ranking.truth_from_transfer(record, "n") == {"t": {"a": 0.5, "b": 0.7}}
  assert ranking.truth_from_transfer(record, "n", seed=1) == {"t": {"a": 0.4}}
  with pytest.raises(ValueError, match=r"no finished cells in regime 'full'; its regimes: \['n'\]"):
    ranking.truth_from_transfer(record, "full")


def test_cosine_matrix_and_cluster_order(tmp_path):
  e = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0]])
  sim = similarity.cosine_matrix(e)
  unit = e / np.linalg.norm(e, axis=1, keepdims=True)
  np.testing.assert_allclose(sim, unit @ unit.T)
  order = similarity.cluster_order(sim)
  assert sorted(order) == [0, 1, 2, 3] and {frozenset(order[:2]), frozenset(order[2:])} == {frozenset({0, 1}),
                                                                                               frozenset({2, 3})}
  similarity.write_csv(tmp_path / "s.csv", list("abcd"), sim)
  names, back = similarity.read_csv(tmp_path / "s.csv")
  assert names == list("abcd") and np.allclose(back, sim, atol=1e-6)
  assert similarity.heatmap(tmp_path / "p" / "s.png", list("abcd"), sim, "t").stat().st_size > 1000
  with pytest.raises(ValueError, match="task embedding 1 is all zeros"):
    similarity.cosine_matrix(np.array([[1.0, 0.0], [0.0, 0.0]]))


def _brute_force(a, k):
  """Independent: every way to choose k subsets covering all tasks, by the module docstring's score."""
  t = len(a)
  subsets = [g for r in range(1, t + 1) for g in itertools.combinations(range(t), r)]
  def s(g, j):
    mates = [i for i in g if i != j]
    return float(np.mean([a[i][j] for i in mates])) if mates else 0.0
  best = -np.inf
  for combo in itertools.combinations(subsets, k):
    if set().union(*combo) != set(range(t)):
      continue
    best = max(best, sum(max(s(g, j) for g in combo if j in g) for j in range(t)))
  return best


def test_groups_pick_the_best_cover_under_the_budget(tmp_path):
  # tasks 0,1 help each other; 2,3 help each other; across pairs they hurt
  a = np.array([[0, .5, -.3, -.2], [.4, 0, -.1, -.4], [-.2, -.3, 0, .6], [-.5, -.1, .3, 0]])
  chosen, total = groups.select(a, 2)
  assert sorted(chosen) == [(0, 1), (2, 3)] and total == pytest.approx(.5 + .4 + .6 + .3)
  for k in (1, 2, 3):
    assert groups.select(a, k)[1] == pytest.approx(_brute_force(a, k))
  old = groups.MAX_EXHAUSTIVE
  groups.MAX_EXHAUSTIVE = 0  # the greedy path covers every task too
  try:
    chosen, _ = groups.select(a, 2)
    assert set().union(*chosen) == {0, 1, 2, 3}
  finally:
    groups.MAX_EXHAUSTIVE = old
  np.testing.assert_allclose(groups.centred(np.array([[1, .5], [.7, 1]])), [[.4, -.1], [.1, .4]])
  with pytest.raises(ValueError, match="budget k=5 models"):
    groups.select(a, 5)


def test_group_experiment_file_is_a_valid_mtl_compare_experiment(tmp_path, monkeypatch):
  from mtl_jax.compare import grid
  from mtl_jax.taskemb import group_mixtures
  path = groups.experiment_gin(tmp_path / "g.gin", "demo", [["bbc_topic", "rotten_tomatoes"], ["vader_tweets"]],
                               ["gin/runs/quickstart.gin", "gin/models/tiny.gin"], {"TRAIN_STEPS": 3}, [0], "test")
  exp = grid.load([str(path)])
  name = "taskemb_group.bbc_topic.rotten_tomatoes"
  assert exp.mixtures == (name, "vader_tweets") and exp.tasks == {name: ["bbc_topic", "rotten_tomatoes"]}
  assert exp.env == {groups.ENV: f"{name}=bbc_topic,rotten_tomatoes"}
  cells = exp.cells()
  assert {c.mixture for c in cells if c.kind == "single"} == {"bbc_topic", "rotten_tomatoes", "vader_tweets"}
  assert all(c.gin_files[-2] == groups.GIN or groups.GIN in c.gin_files for c in cells)
  import tasks.offline  # noqa: F401  the mixture needs its tasks
  monkeypatch.setenv(groups.ENV, exp.env[groups.ENV])
  assert group_mixtures.register_from_env() == [name]
  import seqio
  assert sorted(t.name for t in seqio.get_mixture_or_task(name).tasks) == ["bbc_topic", "rotten_tomatoes"]
  with pytest.raises(ValueError, match="is not NAME=TASK,TASK"):
    group_mixtures.parse("oops")


def test_table_rows_are_mean_and_std_over_seeds_as_numpy():
  from mtl_jax.taskemb import report
  per_seed = [PREDICTED,  # t: b a c (best a at 2), u: x y (1)
              {"t": {"a": 3.0, "b": 2.0, "c": 1.0}, "u": {"x": 1.0, "y": 0.0}},  # ranks 1, 1
              {"t": {"a": 0.0, "b": 1.0, "c": 2.0}, "u": {"x": 0.0, "y": 1.0}}]  # ranks 3, 2
  scores = {"m": [ranking.score(p, TRUTH, (1,)) for p in per_seed], "one": [ranking.score(PREDICTED, TRUTH, (1,))]}
  for rows_ in scores.values():
    for r in rows_:
      r.pop("ndcg_vu")
  rank = np.array([(2 + 1) / 2, (1 + 1) / 2, (3 + 2) / 2])
  regret = np.array([(0.25 + 0) / 2, 0.0, ((0.8 - 0.5) / 0.8 + (0.2 + 0.1) / 0.2) / 2])
  rows = report.summarise(scores)
  assert rows[0]["n"] == 3 and rows[1]["n"] == 1
  assert rows[0]["rank_of_best"] == pytest.approx((rank.mean(), rank.std(ddof=1), 3))
  assert rows[0]["regret@1"] == pytest.approx((regret.mean(), regret.std(ddof=1), 3))
  assert rows[1]["rank_of_best"] == pytest.approx((1.5, 0.0, 1))
  text = report.table(rows)
  assert f"| m | 3 | {rank.mean():.3f} ± {rank.std(ddof=1):.3f} |" in text and "| one | 1 | 1.500 |" in text
