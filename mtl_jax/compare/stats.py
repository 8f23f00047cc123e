"""Confidence intervals, paired tests, Holm adjustment and power for every comparison report.

Why one module: mtl-compare, mtl-transfer, mtl-probe and mtl-taskemb all compare arms that were
run on the same seeds (same seed = same data order and initialisation for both arms), so they
share one definition of "significant", stated once here and printed by each report:

  * per arm: mean, 95% t interval over seeds (scipy.stats.t), and a bootstrap CI (percentile)
    over seeds -- or over seeds x test examples when per-example scores are known;
  * per comparison (paired over seeds): the paired t-test (scipy.stats.ttest_rel) is the primary
    test; the exact sign-flip permutation test is a robustness column (its smallest two-sided p
    with n pairs is 2/2^n, so it cannot reach 0.05 below n = 6);
  * Holm-Bonferroni over all comparisons of one report; a direction (better / worse) is claimed
    only where the adjusted p < alpha; equal scores (all differences 0) have p = 1, never worse;
  * power: for a non-significant comparison, the smallest difference the paired t design with
    these n seeds and this SD of differences detects with 80% power (noncentral t), and the
    number of seeds that would detect the observed difference;
  * fewer than 2 pairs: no test (every p is None and the reason is 'n=1: no test').

Pure numpy / scipy (no jax): cheap to import from any report.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0          # bootstrap rng seed: reports are reproducible
EXACT_MAX_N = 16  # sign flips enumerated exactly up to 2^16 patterns; Monte Carlo beyond
NO_TEST = "n=1: no test"

METHOD = (
    "Means are over seeds; 95% CIs are t intervals over seeds (scipy.stats.t) and percentile "
    "bootstrap CIs (2,000 resamples, fixed rng seed) over seeds{examples}. Every comparison is paired "
    "over seeds (same seed = same data order and initialisation): p is the paired t-test "
    "(scipy.stats.ttest_rel), p_perm the exact sign-flip permutation test (robustness; with n seeds its "
    "smallest two-sided p is 2/2^n, {min_p} here, so it cannot reach 0.05 below 6 seeds). Adjusted p is "
    "Holm-Bonferroni over all {m} comparisons of this report; ▲/▼ mark only adjusted p < {alpha}, other "
    "differences are not significant (n.s.) whatever their sign, and equal scores are never worse; where "
    "every seed differs by the same nonzero amount (a discrete metric: one test example each), the t-test "
    "has no spread to use and p is the sign flip's. For a "
    "non-significant comparison, 'detectable' is the smallest difference this design (paired t, same n "
    "and SD of the differences, alpha {alpha}/{m}: Holm's strictest step) finds with 80% power "
    "(noncentral t), and 'seeds needed' the number of seeds that would find the observed difference. "
    "With one seed there is no test.")


def _clean(values) -> np.ndarray:
  """Finite floats of a sequence (None / NaN dropped)."""
  arr = np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)
  return arr[np.isfinite(arr)]


# ------------------------------------------------------------------ one arm: mean and CIs

def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
  """Two-sided t interval of the mean over seeds; (nan, nan) below 2 values; (m, m) if all equal."""
  x = _clean(values)
  if x.size < 2:
    return (math.nan, math.nan)
  mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))
  if sem == 0.0:
    return (mean, mean)
  lo, hi = stats.t.interval(confidence, df=x.size - 1, loc=mean, scale=sem)
  return (float(lo), float(hi))


def bootstrap_ci(values: Sequence[float], statistic: Callable = np.mean,
                 confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED) -> tuple[float, float]:
  """Percentile bootstrap CI of statistic(values) over one sample (seeds, or targets of a
  ranking); scipy.stats.bootstrap with a fixed rng. Percentile, not BCa: BCa is undefined on
  the tiny / constant samples seeds give. (nan, nan) below 2 values; (s, s) if all equal."""
  x = _clean(values)
  if x.size < 2:
    return (math.nan, math.nan)
  if np.all(x == x[0]):
    v = float(statistic(x))
    return (v, v)
  res = stats.bootstrap((x,), lambda s, axis=-1: statistic(s, axis=axis), confidence_level=confidence,
                        n_resamples=n_resamples, method="percentile", vectorized=True,
                        rng=np.random.default_rng(seed))
  return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def nested_bootstrap_ci(per_seed_scores: Sequence[Sequence[float]], confidence: float = CONFIDENCE,
                        n_resamples: int = N_RESAMPLES, seed: int = SEED,
                        chunk: int = 256) -> tuple[float, float]:
  """Percentile CI of the mean-over-seeds of per-seed test means, resampling seeds and then
  test examples within each drawn seed (two-stage bootstrap). per_seed_scores[s] holds seed s's
  per-example scores (e.g. 1/0 correct for accuracy). Why two stages: seeds alone ignore the
  finite test set, examples alone ignore training noise. (nan, nan) below 2 seeds."""
  seeds = [np.asarray(s, dtype=float) for s in per_seed_scores if len(s)]
  if len(seeds) < 2:
    return (math.nan, math.nan)
  rng = np.random.default_rng(seed)
  n_seeds = len(seeds)
  pick = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
  slot_means = np.empty(pick.shape)
  for s, scores in enumerate(seeds):
    where = np.nonzero(pick == s)
    draws = np.empty(where[0].size)
    for start in range(0, draws.size, chunk):  # chunked: draws x examples stays small
      k = min(chunk, draws.size - start)
      draws[start:start + k] = scores[rng.integers(0, scores.size, size=(k, scores.size))].mean(axis=1)
    slot_means[where] = draws
  totals = slot_means.mean(axis=1)
  tail = (1 - confidence) / 2
  return (float(np.quantile(totals, tail)), float(np.quantile(totals, 1 - tail)))


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> dict:
  """{'mean', 'std', 'n', 'ci' (t interval), 'boot_ci'} of one arm's per-seed values."""
  x = _clean(values)
  return {"mean": float(x.mean()) if x.size else math.nan,
          "std": float(x.std(ddof=1)) if x.size > 1 else math.nan, "n": int(x.size),
          "ci": t_interval(x, confidence), "boot_ci": bootstrap_ci(x, confidence=confidence)}


# ------------------------------------------------------------------ paired comparisons

def min_sign_flip_p(n: int) -> float:
  """The smallest two-sided p the exact sign-flip test can give with n pairs: 2/2^n."""
  return min(1.0, 2.0 / 2.0 ** n) if n >= 1 else 1.0


def sign_flip_p(diffs, axis: int = -1, n_resamples: int = 100_000, seed: int = SEED) -> np.ndarray:
  """Two-sided sign-flip permutation p of mean(diffs) = 0 along axis: the share of the 2^n sign
  patterns whose |mean| reaches the observed one (exact for n <= EXACT_MAX_N, else a fixed-seed
  Monte Carlo sample including the identity). Vectorised over the other axes."""
  d = np.moveaxis(np.asarray(diffs, dtype=float), axis, -1)
  n = d.shape[-1]
  if n == 0:
    return np.full(d.shape[:-1], np.nan)[()]
  if n <= EXACT_MAX_N:
    signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)  # (2^n, n), row 0 = identity
  else:
    signs = np.random.default_rng(seed).choice([-1, 1], size=(n_resamples, n))
    signs[0] = 1
  observed = np.abs(d.mean(axis=-1))
  null = np.abs(d @ signs.T.astype(float) / n)  # (..., patterns)
  tol = 1e-12 * np.maximum(1.0, observed)
  return ((null >= (observed - tol)[..., None]).mean(axis=-1))[()]


CONSTANT_NOTE = "constant differences: p is the sign flip's"
CONSTANT_ARMS_NOTE = "constant arms: p is the exact permutation p"


def _flat(values: np.ndarray) -> bool:
  """All equal up to float rounding (0.3-0.1 vs 0.32-0.12)."""
  return bool(np.ptp(values) <= 1e-12 * max(1.0, float(np.abs(values).max())))


def _zero(values: np.ndarray) -> bool:
  """All 0 up to float rounding."""
  return bool(np.all(np.abs(values) <= 1e-12 * max(1.0, float(np.abs(values).max()))))


def _ttest_p(diffs: np.ndarray) -> tuple[float, float]:
  """(t, two-sided p) of the paired t-test on differences that vary; p = 1 when all are 0 (equal
  is never worse or better). A nonzero constant never reaches here (paired_test)."""
  if _zero(diffs):
    return (0.0, 1.0)
  res = stats.ttest_1samp(diffs, 0.0)  # == ttest_rel(a, b) on the pairs
  return (float(res.statistic), float(res.pvalue))


def paired_test(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool = True,
                confidence: float = CONFIDENCE) -> dict:
  """Paired comparison of arm a against arm b over matched units (seeds, or ranking targets).

  a[i] and b[i] must be the same unit; pairs with a missing side are dropped. Returns diff
  (mean of a - b), ci (t interval of the difference), sd (of the differences), n, t, p
  (paired t-test), p_perm (exact sign flip), min_p_perm and 'gain' (diff with the sign that
  makes positive = a better). Below 2 pairs every p is None and 'note' is 'n=1: no test'."""
  if len(a) != len(b):
    raise ValueError(f"paired_test: {len(a)} values vs {len(b)}; pass one value per seed to each side, "
                     "in the same seed order")
  pa = np.asarray([np.nan if v is None else float(v) for v in a], dtype=float)
  pb = np.asarray([np.nan if v is None else float(v) for v in b], dtype=float)
  keep = np.isfinite(pa) & np.isfinite(pb)
  d = pa[keep] - pb[keep]
  n = int(d.size)
  out = {"n": n, "diff": float(d.mean()) if n else math.nan,
         "sd": float(d.std(ddof=1)) if n > 1 else math.nan, "ci": t_interval(d, confidence),
         "t": None, "p": None, "p_perm": None, "min_p_perm": min_sign_flip_p(n), "note": ""}
  out["gain"] = out["diff"] * (1 if higher_is_better else -1)
  if n < 2:
    out["note"] = f"n={n}: no test"
    return out
  out["p_perm"] = float(sign_flip_p(d))
  if _flat(d) and not _zero(d):
    # a nonzero constant: sample SD 0 and t infinite, an artefact of a discrete metric (every seed gained the
    # same one test example), not certainty; p is the exact sign flip's (0.25 with 3 seeds), which needs no spread
    out["t"], out["p"] = math.copysign(math.inf, d[0]), out["p_perm"]
    out["note"], out["sd"] = CONSTANT_NOTE, 0.0  # not a rounding residue of ~1e-16
  else:
    out["t"], out["p"] = _ttest_p(d)
  return out


def paired_by_seed(a: Mapping, b: Mapping, **kw) -> dict:
  """paired_test on the seeds two {seed: value} maps share (the seed list is in 'seeds')."""
  seeds = sorted(set(a) & set(b), key=str)
  out = paired_test([a[s] for s in seeds], [b[s] for s in seeds], **kw)
  out["seeds"] = seeds
  return out


def welch_test(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool = True,
               confidence: float = CONFIDENCE) -> dict:
  """Unpaired comparison of two arms whose units do not match (e.g. the same strategy on two different
  mixtures: a seed's run on one mixture shares nothing with its run on the other). Welch's t-test
  (scipy.stats.ttest_ind, equal_var=False); ci is the Welch-Satterthwaite t interval of mean(a) - mean(b).
  Same keys as paired_test (p_perm is None: there are no pairs to flip); below 2 values per side no test."""
  x, y = _clean(a), _clean(b)
  out = {"n": int(min(x.size, y.size)), "n_a": int(x.size), "n_b": int(y.size),
         "diff": float(x.mean() - y.mean()) if x.size and y.size else math.nan, "sd": math.nan,
         "ci": (math.nan, math.nan), "t": None, "p": None, "p_perm": None, "min_p_perm": None, "note": ""}
  out["gain"] = out["diff"] * (1 if higher_is_better else -1)
  if x.size < 2 or y.size < 2:
    out["note"] = f"n={min(x.size, y.size)}: no test"
    return out
  va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
  se = math.sqrt(va + vb)
  out["sd"] = math.sqrt(x.var(ddof=1) + y.var(ddof=1))  # for power: the SD of one difference of draws
  if _flat(x) and _flat(y):
    # both arms constant: t is 0 or infinite. As in paired_test, not p = 0 but the exact permutation p: only the
    # observed labelling reaches the observed difference, so one-sided 1 / C(n_a + n_b, n_a), two-sided twice
    # that (scipy.stats.permutation_test's convention)
    out["ci"], out["sd"] = (out["diff"], out["diff"]), 0.0
    if _flat(np.concatenate([x, y])):
      out["t"], out["p"] = 0.0, 1.0
    else:
      out["t"], out["note"] = math.copysign(math.inf, out["diff"]), CONSTANT_ARMS_NOTE
      out["p"] = min(1.0, 2 / math.comb(x.size + y.size, x.size))
    return out
  df = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1))
  out["ci"] = tuple(float(v) for v in stats.t.interval(confidence, df=df, loc=out["diff"], scale=se))
  res = stats.ttest_ind(x, y, equal_var=False)
  out["t"], out["p"], out["df"] = float(res.statistic), float(res.pvalue), float(df)
  return out


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
  """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); None / NaN entries
  are not tests: they stay None and do not count in m."""
  idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
  out: list = [None] * len(pvalues)
  m = len(idx)
  running = 0.0
  for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
    running = max(running, min(1.0, (m - rank) * pvalues[i]))
    out[i] = running
  return out


def adjust(comparisons: Sequence[dict], alpha: float = ALPHA) -> list[dict]:
  """Holm over all comparisons of one report (dicts from paired_test), in place: adds p_adj,
  significant, direction (+1 a better, -1 worse, 0 not significant / no test), the family size
  m, and for non-significant tested comparisons power numbers at alpha / m."""
  adjusted = holm([c.get("p") for c in comparisons])
  m = sum(p is not None for p in adjusted)
  for c, p_adj in zip(comparisons, adjusted):
    c["p_adj"] = p_adj
    c["m"] = m
    c["significant"] = p_adj is not None and p_adj < alpha
    c["direction"] = int(np.sign(c["gain"])) if c["significant"] else 0
    c["detectable"] = c["seeds_needed"] = None
    if p_adj is not None and not c["significant"]:
      level = alpha / max(m, 1)
      c["detectable"] = detectable_difference(c["n"], c["sd"], alpha=level)
      c["seeds_needed"] = seeds_needed(c["diff"], c["sd"], alpha=level)
  return list(comparisons)


# ------------------------------------------------------------------ power (paired t design)

def paired_t_power(n, effect, alpha: float = ALPHA):
  """Power of the two-sided paired t-test with n pairs for a standardised effect
  (mean difference / SD of differences): P(|T| > t_crit), T ~ noncentral t(n-1, effect*sqrt(n)).
  Vectorised over n and effect."""
  n = np.asarray(n, dtype=float)
  df = n - 1
  crit = stats.t.ppf(1 - alpha / 2, df)
  nc = np.abs(np.asarray(effect, dtype=float)) * np.sqrt(n)
  # the far tail underflows to NaN in scipy for large nc (df 1-2): it is ~0 there
  return stats.nct.sf(crit, df, nc) + np.nan_to_num(stats.nct.cdf(-crit, df, nc), nan=0.0)


def detectable_difference(n: int, sd: float, alpha: float = ALPHA, power: float = POWER) -> float | None:
  """Smallest |mean difference| the paired t design (n pairs, SD of differences sd) detects
  with the given power; None below 2 pairs and when the differences do not vary (no spread to
  scale by: the test there is the sign flip's, see paired_test)."""
  if n is None or n < 2 or sd is None or math.isnan(sd) or sd == 0:
    return None
  hi = 1.0
  while paired_t_power(n, hi, alpha) < power:
    hi *= 2
  effect = optimize.brentq(lambda e: paired_t_power(n, e, alpha) - power, 0.0, hi, xtol=1e-10)
  return float(effect * sd)


def seeds_needed(diff: float, sd: float, alpha: float = ALPHA, power: float = POWER,
                 max_n: int = 100_000) -> int | None:
  """Fewest seeds (pairs) with which the paired t-test finds a true difference diff at the given
  power when the differences have SD sd; None when diff is 0 / unknown or more than max_n
  would be needed. When sd is 0 (constant differences, tested by the sign flip): the fewest
  seeds whose smallest sign-flip p, 2 / 2^n, is below alpha."""
  if diff is None or sd is None or math.isnan(diff) or math.isnan(sd) or diff == 0:
    return None
  if sd == 0:
    return next(n for n in itertools.count(2) if min_sign_flip_p(n) < alpha)
  effect = abs(diff) / sd
  lo, hi = 2, 2
  while paired_t_power(hi, effect, alpha) < power:
    if hi >= max_n:
      return None
    lo, hi = hi, min(hi * 2, max_n)
  while lo < hi:  # power rises with n: first n reaching it
    mid = (lo + hi) // 2
    if paired_t_power(mid, effect, alpha) >= power:
      hi = mid
    else:
      lo = mid + 1
  return int(hi)


# ------------------------------------------------------------------ report text helpers

def method_paragraph(n_seeds: int, m: int, examples: bool = False, alpha: float = ALPHA) -> str:
  """The one paragraph each report prints on how its numbers were computed."""
  return METHOD.format(examples=" x test examples" if examples else "",
                       min_p=f"{min_sign_flip_p(n_seeds):.3g} with n = {n_seeds}", m=m, alpha=alpha)


def arrow(comparison: dict) -> str:
  """▲ / ▼ for a significant gain / loss, 'n.s.' otherwise, NO_TEST below 2 pairs."""
  if comparison.get("p") is None:
    return comparison.get("note") or NO_TEST
  return {1: "▲", -1: "▼"}.get(comparison.get("direction", 0), "n.s.")


def fmt_p(p: float | None) -> str:
  """p for a table: '–' when no test, 3 significant digits, '<1e-4' below that."""
  if p is None:
    return "–"
  return "<1e-4" if p < 1e-4 else f"{p:.3g}"
