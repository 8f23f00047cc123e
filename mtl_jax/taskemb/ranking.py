"""Rank candidate source tasks for a target and score the ranking against a measured transfer matrix.

A method gives predicted[target][source] (higher = expected to transfer better): cosine similarity
of task embeddings, TAG affinity Z[source -> target], the source's training-set size (DataSize), or
random numbers (Random). The truth is transfer[target][source]: the target's score after
fine-tuning from that source (mtl-transfer's matrix). Per target (Vu et al. 2020):
  NDCG@k    DCG of the predicted top k / DCG of the ideal top k, with relevance = score minus the
            worst candidate's score (so a constant offset of the metric does not count)
  Regret@k  (O - M_k) / |O|: O the true best score, M_k the best true score among the predicted top k
  rank      the 1-based position of the true best source in the predicted ranking ('rank_of_best'):
            Vu et al.'s rho when averaged over targets (the average rank of the best source)
  NDCG_vu   Vu et al.'s NDCG: exponential gain 2^rel - 1 with rel = the truth score itself (our scores
            are metrics in [0, 1]; lower-is-better ones arrive negated), discount 1/log2(i + 1), over
            the FULL candidate list ('ndcg_vu'). The ndcg@k above is mtl_jax's own (linear gain on the
            score above the worst candidate, cut at k): under it a random ranking scores well above 0.
Random's expectation is closed-form (`expected_random`): a uniformly random order puts every candidate
at every position with probability 1/n, so E[DCG] = mean(gain) x sum of the discounts, E[rank] = (n+1)/2,
and the best of a random k-subset is the j-th smallest of n with probability C(j-1, k-1) / C(n, k).
Bad input (one line each): a target with fewer than 2 candidates, a missing / non-finite truth cell,
k larger than a target's candidates.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def ranking(predicted: Mapping[str, float]) -> list[str]:
  """Sources by predicted score, best first (ties: by name, so the order is deterministic)."""
  return sorted(predicted, key=lambda s: (-predicted[s], s))


def ndcg_at(order: Sequence[str], truth: Mapping[str, float], k: int) -> float:
  rel = {s: truth[s] - min(truth.values()) for s in truth}
  discount = 1.0 / np.log2(np.arange(2, k + 2))
  dcg = sum(rel[s] * d for s, d in zip(order[:k], discount))
  ideal = sum(r * d for r, d in zip(sorted(rel.values(), reverse=True)[:k], discount))
  return float(dcg / ideal) if ideal > 0 else 1.0  # every candidate equal: any ranking is ideal


def ndcg_vu(order: Sequence[str], truth: Mapping[str, float]) -> float:
  """Vu et al.'s NDCG: sum_i (2^rel_i - 1) / log2(i + 1) over the full predicted order / the ideal's."""
  discount = 1.0 / np.log2(np.arange(2, len(order) + 2))
  dcg = float(np.sum([(2.0 ** truth[s] - 1.0) * d for s, d in zip(order, discount)]))
  ideal = float(np.sum((2.0 ** np.sort(np.asarray(list(truth.values()), float))[::-1] - 1.0) * discount))
  return dcg / ideal if ideal != 0 else 1.0


def regret_at(order: Sequence[str], truth: Mapping[str, float], k: int) -> float:
  best = max(truth.values())
  got = max(truth[s] for s in order[:k])
  return float((best - got) / abs(best)) if best != 0 else float(best - got)


def best_rank(order: Sequence[str], truth: Mapping[str, float]) -> int:
  best = max(truth, key=lambda s: (truth[s], s))
  return order.index(best) + 1


def per_target(predicted: Mapping[str, Mapping[str, float]], truth: Mapping[str, Mapping[str, float]],
               ks: Sequence[int] = (1, 3)) -> dict[str, dict[str, float]]:
  """{target: {metric: value}}: the unit the bootstrap CIs and paired tests resample."""
  return {t: score(predicted, {t: truth[t]}, ks) for t in truth}


def check_target(target: str, sources: Mapping[str, float], ks: Sequence[int] = ()) -> None:
  """One line for a target that cannot be scored."""
  if len(sources) < 2:
    raise ValueError(f"target {target!r} has {len(sources)} candidate source(s) {sorted(sources)}: ranking needs "
                     ">= 2; measure more sources for it or drop it")
  bad = sorted(s for s, v in sources.items() if v is None or not np.isfinite(v))
  if bad:
    raise ValueError(f"target {target!r} has missing truth cells for source(s) {bad}: finish those transfer "
                     "cells (mtl-transfer resumes them) or drop the sources")
  if any(k > len(sources) for k in ks):
    raise ValueError(f"k={max(ks)} is larger than the {len(sources)} candidate sources of target {target!r}; "
                     f"use --k <= {len(sources)}")


def expected_random(truth: Mapping[str, float], ks: Sequence[int] = (1, 3)) -> dict[str, float]:
  """The expected metrics of a uniformly random ranking of one target's candidates (closed form)."""
  from math import comb
  check_target("?", truth, ks)
  values = np.asarray(list(truth.values()), float)
  n = len(values)
  rel = values - values.min()
  asc = np.sort(values)
  out = {"rank_of_best": (n + 1) / 2.0}
  disc = 1.0 / np.log2(np.arange(2, n + 2))
  exp_gain = 2.0 ** values - 1.0
  ideal_vu = float(np.sum(np.sort(exp_gain)[::-1] * disc))
  out["ndcg_vu"] = float(exp_gain.mean() * disc.sum() / ideal_vu) if ideal_vu != 0 else 1.0
  best = asc[-1]
  for k in ks:
    ideal = float(np.sum(np.sort(rel)[::-1][:k] * disc[:k]))
    out[f"ndcg@{k}"] = float(rel.mean() * disc[:k].sum() / ideal) if ideal > 0 else 1.0
    e_max = sum(asc[j - 1] * comb(j - 1, k - 1) for j in range(k, n + 1)) / comb(n, k)
    out[f"regret@{k}"] = float((best - e_max) / abs(best)) if best != 0 else float(best - e_max)
  return out


def score(predicted: Mapping[str, Mapping[str, float]], truth: Mapping[str, Mapping[str, float]],
          ks: Sequence[int] = (1, 3)) -> dict[str, float]:
  """Metrics averaged over the targets of `truth`; predicted[target] must cover truth[target]'s sources."""
  per_target = []
  for target, sources in truth.items():
    missing = [s for s in sources if s not in predicted.get(target, {})]
    if missing:
      raise ValueError(f"no predicted score for source(s) {missing} of target {target!r}; "
                       "embed every source task, or drop it from the transfer matrix")
    check_target(target, sources, ks)
    order = ranking({s: predicted[target][s] for s in sources})
    row = {"rank_of_best": best_rank(order, sources), "ndcg_vu": ndcg_vu(order, sources)}
    for k in ks:
      row[f"ndcg@{k}"] = ndcg_at(order, sources, k)
      row[f"regret@{k}"] = regret_at(order, sources, k)
    per_target.append(row)
  if not per_target:
    raise ValueError("the transfer matrix has no (target, source) pairs to score against")
  return {key: float(np.mean([r[key] for r in per_target])) for key in per_target[0]}


def from_matrix(names: Sequence[str], matrix: np.ndarray, sources_of: Mapping[str, Sequence[str]],
                transpose: bool = False) -> dict[str, dict[str, float]]:
  """A [T, T] task matrix -> predicted[target][source]; matrix[target, source] unless transposed
  (affinity is Z[source, target]: how a step on the source changes the target's loss)."""
  index = {n: i for i, n in enumerate(names)}
  unknown = sorted({t for t in sources_of if t not in index} | {s for v in sources_of.values() for s in v
                                                                 if s not in index})
  if unknown:
    raise ValueError(f"task(s) {unknown} of the transfer matrix have no embedding / affinity; "
                     f"these were computed for {list(names)}")
  m = np.asarray(matrix).T if transpose else np.asarray(matrix)
  return {t: {s: float(m[index[t], index[s]]) for s in sources} for t, sources in sources_of.items()}


def data_size(sizes: Mapping[str, int], sources_of: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
  """The DataSize baseline: the bigger the source's training set, the better it is expected to be."""
  return {t: {s: float(sizes[s]) for s in sources} for t, sources in sources_of.items()}


def random_scores(sources_of: Mapping[str, Sequence[str]], seed: int) -> dict[str, dict[str, float]]:
  rng = np.random.default_rng(seed)
  return {t: {s: float(v) for s, v in zip(sources, rng.random(len(sources)))} for t, sources in sources_of.items()}


def truth_from_transfer(matrix_json: Mapping, regime: str, value: str = "mean",
                        seed: int | None = None) -> dict[str, dict[str, float]]:
  """transfer[target][source] from mtl-transfer's transfer_matrix.json (the 'none' baseline left out):
  the seed mean ('mean') or one seed's cell score (seed=S)."""
  from mtl_jax.transfer.grid import NONE
  out: dict[str, dict[str, float]] = {}
  if seed is None:
    rows = [r for r in matrix_json["matrix"] if r["regime"] == regime and r["source"] != NONE]
    for r in rows:
      out.setdefault(r["target"], {})[r["source"]] = float(r[value])
  else:
    for c in matrix_json["cells"]:
      if c["regime"] == regime and c["source"] != NONE and c["seed"] == seed:
        out.setdefault(c["target"], {})[c["source"]] = float(c["score"])
  if not out:
    regimes = sorted({r["regime"] for r in matrix_json["matrix"]})
    raise ValueError(f"transfer matrix has no finished cells in regime {regime!r}"
                     f"{'' if seed is None else f' for seed {seed}'}; its regimes: {regimes}")
  return out


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def truth_ties(matrix_json: Mapping, regime: str) -> dict[str, dict]:
  """Per target of the transfer matrix: best and second source, their mean difference and its standard
  error sqrt(sd_1^2/n_1 + sd_2^2/n_2) over seeds; 'tie' when the difference is within 2 standard errors
  (the truth cannot tell them apart, so neither can a ranking), None with one seed."""
  from mtl_jax.transfer.grid import NONE
  rows: dict[str, list] = {}
  for r in matrix_json["matrix"]:
    if r["regime"] == regime and r["source"] != NONE and r.get("mean") is not None:
      rows.setdefault(r["target"], []).append(r)
  out = {}
  for target, rs in rows.items():
    if len(rs) < 2:
      continue
    first, second = sorted(rs, key=lambda r: (-r["mean"], r["source"]))[:2]
    n1, n2 = int(first.get("n") or 1), int(second.get("n") or 1)
    if n1 > 1 and n2 > 1 and first.get("std") is not None and second.get("std") is not None:
      se = float(np.sqrt(first["std"] ** 2 / n1 + second["std"] ** 2 / n2))
    else:
      se = float("nan")
    diff = float(first["mean"] - second["mean"])
    out[target] = {"best": first["source"], "second": second["source"], "diff": diff, "se": se,
                   "tie": None if np.isnan(se) else bool(diff < 2 * se)}
  return out
