"""Per-component TaskEmb cosines, reciprocal rank fusion, and ranking scores with CIs and paired tests."""

import numpy as np
import pytest
from scipy import stats as sps

from mtl_jax.taskemb import components, ranking, ranking_stats

RNG = np.random.default_rng(0)
NAMES = ["a", "b", "c", "d"]


def _fisher(i):
  """A fisher.diagonal_fisher-shaped dict with distinct components per task."""
  r = np.random.default_rng(i)
  return {"params": {"trunk/w": r.random((3, 2)), "trunk/key_bias": np.zeros(2)},
          "activations": r.random((2, 4)), "attention": r.random((2, 4)), "pooled": r.random(4),
          "classifier": {"heads/kernel": r.random((4, 2 + (i == 3)))}}


def test_each_component_is_its_own_cosine_and_incomparable_ones_are_skipped():
  per_task = [components.of_fisher(_fisher(i)) for i in range(4)]
  assert sorted(per_task[0]) == ["attention_0", "attention_1", "classifier:heads/kernel", "layer_0", "layer_1",
                                 "param:trunk/key_bias", "param:trunk/w", "pooled"]
  got, skipped = components.cosines(per_task)
  # the zero key bias (no gradient ever reaches it) and the 3-class classifier of task d cannot be compared
  assert skipped == ["classifier:heads/kernel", "param:trunk/key_bias"]
  for name, raw in (("layer_1", lambda f: f["activations"][1]), ("attention_0", lambda f: f["attention"][0]),
                    ("pooled", lambda f: f["pooled"]), ("param:trunk/w", lambda f: f["params"]["trunk/w"])):
    v = [np.ravel(raw(_fisher(i))) for i in range(4)]
    want = np.array([[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in v] for x in v])
    np.testing.assert_allclose(got[name], want, rtol=1e-12, err_msg=name)


def test_reciprocal_rank_fusion_and_mean_by_hand():
  # two components; target a's candidates b, c, d
  c1 = np.array([[1, .9, .5, .1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.]])  # a: b 1, c 2, d 3
  c2 = np.array([[1, .2, .8, .4], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.]])  # a: c 1, d 2, b 3
  per = {"x": c1, "y": c2}
  sources = {"a": ["b", "c", "d"]}
  fused = components.predicted(per, NAMES, sources, "rrf")["a"]
  k = components.RRF_K
  assert fused == pytest.approx({"b": 1 / (k + 1) + 1 / (k + 3), "c": 1 / (k + 2) + 1 / (k + 1),
                                 "d": 1 / (k + 3) + 1 / (k + 2)})
  assert ranking.ranking(fused) == ["c", "b", "d"]
  assert components.predicted(per, NAMES, sources, "mean")["a"] == pytest.approx({"b": .55, "c": .65, "d": .25})
  assert components.predicted(per, NAMES, sources, "y")["a"] == {"b": .2, "c": .8, "d": .4}
  # only the candidates are ranked: a non-candidate never shifts a rank
  assert components.predicted(per, NAMES, {"a": ["b", "d"]}, "rrf")["a"] == pytest.approx(
      {"b": 1 / (k + 1) + 1 / (k + 2), "d": 1 / (k + 2) + 1 / (k + 1)})
  with pytest.raises(ValueError, match="combine='median'"):
    components.predicted(per, NAMES, sources, "median")
  with pytest.raises(ValueError, match="no comparable TaskEmb component"):
    components.predicted({}, NAMES, sources)


def test_ranking_scores_carry_bootstrap_cis_over_targets_and_paired_tests():
  targets = [f"t{i}" for i in range(8)]
  per_method = {m: [{t: {"ndcg@1": float(RNG.random()), "regret@1": float(RNG.random())} for t in targets}
                    for _ in range(seeds)] for m, seeds in (("taskemb", 2), ("datasize", 1), ("random", 3))}
  result = ranking_stats.summary(per_method)
  mean = {m: np.array([np.mean([s[t]["ndcg@1"] for s in per_method[m]]) for t in targets]) for m in per_method}
  row = result["rows"][0]
  assert row["method"] == "taskemb" and row["seeds"] == 2 and row["targets"] == 8
  assert row["ndcg@1"]["mean"] == pytest.approx(mean["taskemb"].mean())
  boot = sps.bootstrap((mean["taskemb"],), np.mean, n_resamples=2000, method="percentile",
                       rng=np.random.default_rng(0))
  assert row["ndcg@1"]["ci"] == pytest.approx((boot.confidence_interval.low, boot.confidence_interval.high))
  pairs = {(c["method"], c["baseline"], c["metric"]): c for c in result["comparisons"]}
  # taskemb and datasize vs both baselines, datasize vs random once, never a baseline against itself
  assert sorted({k[:2] for k in pairs}) == [("datasize", "random"), ("taskemb", "datasize"), ("taskemb", "random")]
  c = pairs[("taskemb", "random", "ndcg@1")]
  assert c["p"] == pytest.approx(sps.ttest_rel(mean["taskemb"], mean["random"]).pvalue)
  assert c["p_adj"] >= c["p"] and c["m"] == 6
  text = ranking_stats.markdown(result)
  assert "| taskemb | 2 |" in text and "Holm" in text and "| taskemb | random | ndcg@1 |" in text
  with pytest.raises(ValueError, match="scored on targets"):
    ranking_stats.summary({"a": per_method["taskemb"], "b": [{"t0": {"ndcg@1": 0.0, "regret@1": 0.0}}]})
