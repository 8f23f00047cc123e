"""Rank candidate source tasks for a target and score the ranking against a measured transfer matrix.

A method gives predicted[target][source] (higher = expected to transfer better): cosine similarity
of task embeddings, TAG affinity Z[source -> target], the source's training-set size (DataSize), or
random numbers (Random). The truth is transfer[target][source]: the target's score after
fine-tuning from that source (mtl-transfer's matrix). Per target (Vu et al. 2020):
  NDCG@k    DCG of the predicted top k / DCG of the ideal top k, with relevance = score minus the
            worst candidate's score (so a constant offset of the metric does not count)
  Regret@k  (O - M_k) / |O|: O the true best score, M_k the best true score among the predicted top k
  rank      the 1-based position of the true best source in the predicted ranking
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


def regret_at(order: Sequence[str], truth: Mapping[str, float], k: int) -> float:
  best = max(truth.values())
  got = max(truth[s] for s in order[:k])
  return float((best - got) / abs(best)) if best != 0 else float(best - got)


def best_rank(order: Sequence[str], truth: Mapping[str, float]) -> int:
  best = max(truth, key=lambda s: (truth[s], s))
  return order.index(best) + 1


def score(predicted: Mapping[str, Mapping[str, float]], truth: Mapping[str, Mapping[str, float]],
          ks: Sequence[int] = (1, 3)) -> dict[str, float]:
  """Metrics averaged over the targets of `truth`; predicted[target] must cover truth[target]'s sources."""
  per_target = []
  for target, sources in truth.items():
    missing = [s for s in sources if s not in predicted.get(target, {})]
    if missing:
      raise ValueError(f"no predicted score for source(s) {missing} of target {target!r}; "
                       "embed every source task, or drop it from the transfer matrix")
    order = ranking({s: predicted[target][s] for s in sources})
    row = {"rank_of_best": best_rank(order, sources)}
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
