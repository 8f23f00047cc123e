"""mtl_jax.compare.stats against scipy.stats, hand computations and simulations (no training)."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from mtl_jax.compare import stats

A = [0.81, 0.79, 0.84, 0.80, 0.83, 0.78]
B = [0.78, 0.79, 0.80, 0.77, 0.81, 0.74]


def test_t_interval_equals_scipy_and_hand_formula():
  lo, hi = stats.t_interval(A)
  x = np.asarray(A)
  ref = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
  np.testing.assert_allclose((lo, hi), ref, rtol=1e-12)
  half = 2.570581835636314 * x.std(ddof=1) / math.sqrt(6)  # t_{0.975, 5} from tables
  np.testing.assert_allclose((lo, hi), (x.mean() - half, x.mean() + half), rtol=1e-9)
  assert all(math.isnan(v) for v in stats.t_interval([0.5]))  # one seed has no interval
  assert stats.t_interval([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))


def test_paired_test_equals_scipy_ttest_rel_and_permutation_test():
  res = stats.paired_test(A, B)
  ref = sps.ttest_rel(A, B)
  assert res["n"] == 6
  np.testing.assert_allclose([res["t"], res["p"]], [ref.statistic, ref.pvalue], rtol=1e-12)
  np.testing.assert_allclose(res["ci"], ref.confidence_interval(0.95), rtol=1e-10)
  perm = sps.permutation_test((np.asarray(A), np.asarray(B)), lambda x, y, axis: np.mean(x - y, axis=axis),
                              permutation_type="samples", n_resamples=np.inf, vectorized=True)
  np.testing.assert_allclose(res["p_perm"], perm.pvalue, rtol=1e-12)
  # hand enumeration of the 64 sign patterns
  d = np.subtract(A, B)
  hand = np.mean([abs(np.mean(np.array(s) * d)) >= abs(d.mean()) - 1e-12
                  for s in itertools.product([1, -1], repeat=6)])
  assert res["p_perm"] == pytest.approx(hand)
  assert res["diff"] == pytest.approx(d.mean()) and res["gain"] == pytest.approx(d.mean())
  assert stats.paired_test(A, B, higher_is_better=False)["gain"] == pytest.approx(-d.mean())


def test_sign_flip_minimum_p_is_two_over_two_to_the_n_and_wilcoxon_agrees_on_it():
  for n in range(1, 8):
    d = np.arange(1, n + 1, dtype=float)  # all positive, distinct: the most extreme pattern
    assert stats.sign_flip_p(d) == pytest.approx(2 / 2 ** n)
    assert stats.min_sign_flip_p(n) == pytest.approx(2 / 2 ** n)
    if n >= 2:  # exact Wilcoxon signed-rank shares that floor
      assert sps.wilcoxon(d, method="exact").pvalue == pytest.approx(2 / 2 ** n)
  assert stats.min_sign_flip_p(5) > 0.05 and stats.min_sign_flip_p(6) < 0.05


def test_equal_scores_are_never_worse_and_one_seed_has_no_test():
  eq = stats.adjust([stats.paired_test([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])])[0]
  assert eq["p"] == 1.0 and eq["p_perm"] == 1.0 and eq["direction"] == 0
  assert stats.arrow(eq) == "n.s."
  one = stats.adjust([stats.paired_test([0.9], [0.1])])[0]
  assert one["p"] is None and one["p_adj"] is None and one["note"] == stats.NO_TEST
  assert stats.arrow(one) == stats.NO_TEST
  # missing values drop the pair, not the comparison
  assert stats.paired_test([0.9, None, 0.8], [0.7, 0.6, float("nan")])["n"] == 1
  with pytest.raises(ValueError, match="one value per seed"):
    stats.paired_test([1, 2], [1])


def test_welch_test_equals_hand_formula_and_scipy():
  a, b = [0.81, 0.79, 0.84, 0.80, 0.83], [0.70, 0.76, 0.74, 0.79, 0.71, 0.69]  # unequal n and variance
  res = stats.welch_test(a, b)
  x, y = np.asarray(a), np.asarray(b)
  va, vb = x.var(ddof=1) / 5, y.var(ddof=1) / 6
  t = (x.mean() - y.mean()) / math.sqrt(va + vb)
  df = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 5)  # Welch-Satterthwaite
  assert res["t"] == pytest.approx(t, rel=1e-12) and res["df"] == pytest.approx(df, rel=1e-12)
  assert res["p"] == pytest.approx(2 * sps.t.sf(abs(t), df), rel=1e-10)
  assert res["p"] == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
  half = sps.t.ppf(0.975, df) * math.sqrt(va + vb)
  np.testing.assert_allclose(res["ci"], (x.mean() - y.mean() - half, x.mean() - y.mean() + half), rtol=1e-10)
  assert res["p_perm"] is None and res["gain"] > 0
  assert stats.welch_test(a, b, higher_is_better=False)["gain"] < 0
  assert stats.welch_test([0.5], b)["note"] == "n=1: no test" and stats.welch_test([0.5], b)["p"] is None
  assert stats.welch_test([0.7, 0.7], [0.7, 0.7])["p"] == 1.0  # equal is never better or worse
  # both arms constant and different: no spread, so the exact permutation p (2 of C(6, 3) = 20 labellings), not 0
  const = stats.welch_test([0.8, 0.8, 0.8], [0.7, 0.7, 0.7])
  assert const["t"] == math.inf and const["p"] == pytest.approx(2 / math.comb(6, 3)) and const["note"]
  exact = sps.permutation_test(([0.8] * 3, [0.7] * 2), lambda u, v, axis: u.mean(axis) - v.mean(axis),
                               permutation_type="independent", n_resamples=np.inf, vectorized=True).pvalue
  assert stats.welch_test([0.8] * 3, [0.7] * 2)["p"] == pytest.approx(exact) == 2 / math.comb(5, 2)


def test_holm_matches_hand_computation():
  p = [0.01, 0.04, 0.03, None, 0.005]
  # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
  assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
  assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 2*0.5=1.0, max(1.0, 0.9)
  assert stats.holm([]) == []
  # the textbook definition: adj_(i) = max_{j<=i} min(1, (m-j+1) p_(j))
  rng = np.random.default_rng(3)
  for _ in range(20):
    q = rng.uniform(0, 0.2, size=7)
    order = np.argsort(q)
    ref = np.empty(7)
    ref[order] = np.maximum.accumulate(np.minimum(1, (7 - np.arange(7)) * q[order]))
    np.testing.assert_allclose(stats.holm(list(q)), ref)


def test_adjust_marks_direction_only_when_adjusted_p_is_small():
  better = stats.paired_test([0.9, 0.91, 0.92, 0.9, 0.93], [0.8, 0.8, 0.82, 0.79, 0.83])
  worse = stats.paired_test([0.5, 0.52, 0.49, 0.5, 0.51], [0.6, 0.61, 0.6, 0.62, 0.6])
  noise = stats.paired_test([0.5, 0.7, 0.4, 0.6, 0.55], [0.6, 0.5, 0.5, 0.52, 0.6])
  out = stats.adjust([better, worse, noise])
  assert [c["direction"] for c in out] == [1, -1, 0]
  assert [stats.arrow(c) for c in out] == ["▲", "▼", "n.s."]
  assert all(c["m"] == 3 for c in out)
  assert [c["p_adj"] for c in out] == pytest.approx(stats.holm([better["p"], worse["p"], noise["p"]]))
  assert noise["p_adj"] == pytest.approx(min(1, noise["p"]))  # largest p: Holm's last step multiplies by 1
  assert better["detectable"] is None and noise["detectable"] > 0 and noise["seeds_needed"] is not None
  # lower-is-better: a lower score is a gain
  loss = stats.adjust([stats.paired_test([0.1, 0.11, 0.1, 0.12], [0.3, 0.33, 0.29, 0.31],
                                         higher_is_better=False)])[0]
  assert loss["direction"] == 1


def test_power_matches_noncentral_t_and_simulation():
  # detectable difference: power at it is exactly 0.8, by an independent noncentral-t evaluation
  n, sd = 5, 0.02
  d = stats.detectable_difference(n, sd)
  crit = sps.t.ppf(0.975, n - 1)
  nc = d / sd * math.sqrt(n)
  assert sps.nct.sf(crit, n - 1, nc) + sps.nct.cdf(-crit, n - 1, nc) == pytest.approx(0.8, abs=1e-6)
  # seeds needed: the first n whose power reaches 0.8
  k = stats.seeds_needed(0.01, 0.02)
  assert stats.paired_t_power(k, 0.5) >= 0.8 > stats.paired_t_power(k - 1, 0.5)
  assert 30 < k < 40  # textbook: about 34 pairs for d = 0.5 at alpha 0.05, power 0.8
  assert stats.detectable_difference(1, 0.1) is None and stats.seeds_needed(0.0, 0.1) is None
  # simulated power of the paired t-test at the detectable difference is ~0.8
  rng = np.random.default_rng(0)
  diffs = rng.normal(d, sd, size=(4000, n))
  hit = (sps.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05).mean()
  assert abs(hit - 0.8) < 0.03


def test_simulation_null_rate_and_planted_two_sd_difference():
  """200 draws of 5 seeds per arm. Each seed has a shared effect (same data order and init for
  both arms, SD 0.7) plus per-arm noise (SD 0.5): the paired difference has SD 1 = 'SD' below.
  Null: both arms equal -> called significant in <= 10% of draws. Planted: arm a better by 2 SDs
  of the paired difference -> found in >= 80% of draws (the noncentral t says 0.91)."""
  rng = np.random.default_rng(1)
  draws, n = 200, 5
  seed_effect = rng.normal(0, 0.7, size=(2, draws, n))
  noise = rng.normal(0, 1 / math.sqrt(2), size=(2, 2, draws, n))
  sd = 1.0
  for planted, check in ((0.0, lambda rate: rate <= 0.1), (2 * sd, lambda rate: rate >= 0.8)):
    k = 0 if planted == 0 else 1
    a = seed_effect[k] + noise[k, 0] + planted
    b = seed_effect[k] + noise[k, 1]
    p = sps.ttest_rel(a, b, axis=1).pvalue
    for i in range(0, draws, 50):  # the module gives the same p as the vectorised scipy call
      assert stats.paired_test(a[i], b[i])["p"] == pytest.approx(p[i])
    rate = float((p < stats.ALPHA).mean())
    assert check(rate), (planted, rate)
  assert stats.paired_t_power(5, 2.0) == pytest.approx(0.909, abs=0.005)


def test_bootstrap_ci_equals_scipy_and_covers():
  x = [0.71, 0.74, 0.69, 0.77, 0.73]
  lo, hi = stats.bootstrap_ci(x)
  ref = sps.bootstrap((np.asarray(x),), np.mean, n_resamples=2000, method="percentile",
                      rng=np.random.default_rng(stats.SEED)).confidence_interval
  np.testing.assert_allclose((lo, hi), (ref.low, ref.high))
  assert min(x) <= lo < np.mean(x) < hi <= max(x)
  assert stats.bootstrap_ci(x) == (lo, hi)  # fixed rng: reproducible
  assert stats.bootstrap_ci([0.5, 0.5]) == (0.5, 0.5)
  assert all(math.isnan(v) for v in stats.bootstrap_ci([0.5]))
  med = stats.bootstrap_ci(x, statistic=np.median)
  assert min(x) <= med[0] <= np.median(x) <= med[1] <= max(x)


def test_nested_bootstrap_widens_with_fewer_examples_and_centres_on_the_mean():
  rng = np.random.default_rng(2)
  acc = [0.80, 0.82, 0.78]
  big = [(rng.random(4000) < a).astype(float) for a in acc]
  small = [s[:100] for s in big]
  lo_b, hi_b = stats.nested_bootstrap_ci(big, n_resamples=500)
  lo_s, hi_s = stats.nested_bootstrap_ci(small, n_resamples=500)
  grand = np.mean([s.mean() for s in big])
  assert lo_b < grand < hi_b
  assert hi_s - lo_s > hi_b - lo_b  # the finite test set adds width
  # with huge test sets it approaches the seed-only bootstrap of the per-seed means
  seed_only = stats.bootstrap_ci([s.mean() for s in big], n_resamples=500)
  assert abs((hi_b - lo_b) - (seed_only[1] - seed_only[0])) < 0.02
  assert all(math.isnan(v) for v in stats.nested_bootstrap_ci([big[0]]))


def test_summarize_and_method_paragraph():
  s = stats.summarize([0.7, 0.8, None, 0.9])
  assert s["n"] == 3 and s["mean"] == pytest.approx(0.8) and s["std"] == pytest.approx(0.1)
  assert s["ci"] == pytest.approx(stats.t_interval([0.7, 0.8, 0.9]))
  text = stats.method_paragraph(n_seeds=3, m=4)
  assert "0.25 with n = 3" in text and "Holm" in text and "4 comparisons" in text
  assert stats.fmt_p(None) == "–" and stats.fmt_p(3e-6) == "<1e-4" and stats.fmt_p(0.01234) == "0.0123"


def test_constant_differences_are_tested_by_the_sign_flip_not_an_infinite_t():
  # every seed gains the same one test example: sample SD 0, t infinite; that is no certainty
  a, b = [23 / 28, 22 / 28, 25 / 28], [22 / 28, 21 / 28, 24 / 28]
  c = stats.paired_test(a, b)
  assert c["t"] == math.inf and c["p"] == c["p_perm"] == 0.25 == stats.min_sign_flip_p(3)
  assert c["note"] == stats.CONSTANT_NOTE
  [adj] = stats.adjust([c])
  assert not adj["significant"] and stats.arrow(adj) == "n.s." and adj["detectable"] is None
  assert adj["seeds_needed"] == 6  # 2/2^6 = 0.031 < 0.05 <= 2/2^5
  assert stats.paired_test(a + [0.9, 0.9, 0.9], b + [0.9 - 1 / 28] * 3)["p"] == 2 / 2 ** 6
  # zero differences stay p = 1, varying ones the t-test's
  assert stats.paired_test(a, a)["p"] == 1.0
  assert stats.paired_test([1.0, 2.0, 3.5], [0.0, 0.5, 1.0])["p"] == pytest.approx(
      sps.ttest_rel([1.0, 2.0, 3.5], [0.0, 0.5, 1.0]).pvalue)
