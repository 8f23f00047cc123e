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


def test_cross_cosines_rows_against_columns_by_hand():
  """Targets from their own regime (rows) against every task as a source (columns): [i, j] = cos(row_i, col_j)."""
  rows = [components.of_fisher(_fisher(i)) for i in range(3)]
  cols = [components.of_fisher(_fisher(10 + i)) for i in range(3)]
  got, _ = components.cosines(rows, cols)
  x = [np.ravel(_fisher(i)["pooled"]) for i in range(3)]
  y = [np.ravel(_fisher(10 + i)["pooled"]) for i in range(3)]
  want = np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in y] for a in x])
  np.testing.assert_allclose(got["pooled"], want, rtol=1e-12)
  assert not np.allclose(got["pooled"], got["pooled"].T)  # no longer symmetric
  from mtl_jax.taskemb import similarity
  e, f = RNG.random((3, 5)), RNG.random((3, 5))
  np.testing.assert_allclose(similarity.cosine_matrix(e, f), (e / np.linalg.norm(e, axis=1)[:, None])
                             @ (f / np.linalg.norm(f, axis=1)[:, None]).T, rtol=1e-12)


def test_a_target_that_is_also_a_source_is_embedded_twice(tmp_path, monkeypatch):
  """Vu et al.: a target's row comes from its limited-regime run, its column (as another target's candidate
  source) from its full-data source run; before, a target's one embedding served both roles."""
  from mtl_jax.taskemb import cli, fisher
  seen = []

  def fake(out_dir, run, task, args, seed, limit=None, target=False):
    seen.append((task, run.name, limit, target))
    return {**_fisher(NAMES.index(task) + (10 if target else 0)), "examples": 8.0, "step": 1}

  monkeypatch.setattr(cli, "_fisher_cached", fake)
  args = cli.parse_args(["--tasks=a,b,c", "--methods=taskemb", "--taskemb_runs=src__{task}__seed{seed}",
                         "--taskemb_target_runs=tgt__{task}__seed{seed}", "--target_regime=8",
                         f"--out_dir={tmp_path}"])
  methods, _ = cli.embed(args, ["a", "b", "c"], tmp_path, lambda *_: None, targets=["a", "b"])
  assert sorted(seen) == sorted([("a", "tgt__a__seed0", 8, True), ("b", "tgt__b__seed0", 8, True),
                                 ("c", "src__c__seed0", None, False), ("a", "src__a__seed0", None, False),
                                 ("b", "src__b__seed0", None, False)])
  (concat, _), = methods["taskemb_concat"]
  vec = lambda i: fisher.flat_vector(_fisher(i)["params"])
  rows, cols = [vec(10), vec(11), vec(2)], [vec(0), vec(1), vec(2)]
  want = np.array([[r @ c / np.linalg.norm(r) / np.linalg.norm(c) for c in cols] for r in rows])
  np.testing.assert_allclose(concat, want, rtol=1e-12)
  with np.load(tmp_path / "taskemb_seed0.npz") as z:
    assert z["params"].shape == z["params_as_source"].shape == (3, 8)
  # targets that are nobody's candidate source (the synthetic catalogue's) are embedded once: no source run read
  seen.clear()
  cli.embed(args, ["a", "b", "c"], tmp_path, lambda *_: None, targets=["a", "b"], sources={"c"})
  assert sorted(seen) == sorted([("a", "tgt__a__seed0", 8, True), ("b", "tgt__b__seed0", 8, True),
                                 ("c", "src__c__seed0", None, False)])
