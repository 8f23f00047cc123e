"""Task groups under a budget of k models (Standley et al. 2020 / TAG-style network selection),
written as an mtl-compare experiment file so the proposal is checked with one command.

Every non-empty subset G of the tasks is a candidate network. A task j in G is scored by the mean
pairwise gain it receives from its group mates, s_G(j) = mean_{i in G, i != j} A[i, j] (0 alone),
where A is TAG affinity Z[i -> j] (> 0: a step on i lowers j's loss), or a similarity matrix
centred on its mean off-diagonal value (above-average similar tasks gain). k networks are chosen
so that every task is in at least one, maximising sum_j max_{G chosen, j in G} s_G(j): each task is
served by the network that suits it best (the selection problem of both papers). Exhaustive for
small task counts, greedy beyond MAX_EXHAUSTIVE combinations.
"""

from __future__ import annotations

import itertools
import math
import pathlib
from typing import Sequence

import numpy as np

MAX_EXHAUSTIVE = 2_000_000
ENV = "MTL_JAX_TASKEMB_GROUPS"  # 'name=t1,t2;name2=t3,t4': mixtures that group_mixtures registers
GIN = "gin/taskemb/groups.gin"


def centred(sim: np.ndarray) -> np.ndarray:
  off = ~np.eye(len(sim), dtype=bool)
  return np.asarray(sim, np.float64) - (sim[off].mean() if off.any() else 0.0)


def subset_scores(affinity: np.ndarray) -> tuple[list[tuple[int, ...]], np.ndarray]:
  """(every non-empty subset, [S, T] scores: s_G(j) for j in G, -inf elsewhere)."""
  a = np.asarray(affinity, np.float64)
  t = len(a)
  subsets = [g for r in range(1, t + 1) for g in itertools.combinations(range(t), r)]
  scores = np.full((len(subsets), t), -np.inf)
  for row, g in enumerate(subsets):
    for j in g:
      mates = [i for i in g if i != j]
      scores[row, j] = a[mates, j].mean() if mates else 0.0
  return subsets, scores


def select(affinity: np.ndarray, k: int) -> tuple[list[tuple[int, ...]], float]:
  """The best k networks (tuples of task indices) and their total score."""
  t = len(affinity)
  if not 1 <= k <= t:
    raise ValueError(f"budget k={k} models: use 1 <= k <= {t} (the number of tasks)")
  subsets, scores = subset_scores(affinity)
  n = math.comb(len(subsets), k)
  if n <= MAX_EXHAUSTIVE:
    best, best_total = None, -np.inf
    combos = np.array(list(itertools.combinations(range(len(subsets)), k)), np.int64)
    for start in range(0, len(combos), 100_000):
      chunk = combos[start:start + 100_000]
      total = scores[chunk].max(axis=1).sum(axis=1)  # -inf where a task is uncovered
      i = int(np.argmax(total))
      if total[i] > best_total:
        best, best_total = chunk[i], float(total[i])
    return [subsets[i] for i in best], best_total
  finite = np.where(np.isfinite(scores), scores, -1e6)  # greedy: an uncovered task costs 1e6
  chosen, served = [], np.full(t, -1e6)
  for _ in range(k):
    i = int(np.argmax(np.maximum(finite, served).sum(axis=1)))
    chosen.append(subsets[i])
    served = np.maximum(served, finite[i])
  return chosen, float(served.sum())


def group_name(tasks: Sequence[str]) -> str:
  return "taskemb_group." + ".".join(sorted(tasks))


def env_value(groups: Sequence[Sequence[str]]) -> str:
  return ";".join(f"{group_name(g)}={','.join(sorted(g))}" for g in groups if len(g) > 1)


def experiment_gin(path: pathlib.Path, name: str, groups: Sequence[Sequence[str]], gin_files: Sequence[str],
                   bindings: dict, seeds: Sequence[int], source: str) -> pathlib.Path:
  """An mtl-compare experiment: one hard-sharing run per proposed group (a one-task group is the
  task itself), plus single-task baselines of every task, on the trunk's gin files."""
  mixtures = [group_name(g) if len(g) > 1 else g[0] for g in groups]
  tasks = {group_name(g): sorted(g) for g in groups if len(g) > 1}
  lines = [f"# Task groups proposed by mtl-taskemb from {source}: {len(groups)} models.",
           f"#   python -m mtl_jax.compare --experiment={path}",
           "# Each group is a mixture registered by mtl_jax.taskemb.group_mixtures from the env variable",
           f"# {ENV} (set below for every cell); single-task baselines come with baselines = True.",
           "from mtl_jax.compare import grid", "",
           f"experiment.name = {name!r}",
           f"experiment.description = {('task groups from ' + source)!r}",
           f"experiment.gin_files = {[*gin_files, GIN]!r}",
           "experiment.strategies = ['hard']",
           f"experiment.mixtures = {mixtures!r}",
           f"experiment.tasks = {tasks!r}",
           f"experiment.seeds = {list(seeds)!r}",
           f"experiment.bindings = {dict(bindings)!r}",
           f"experiment.env = {{{ENV!r}: {env_value(groups)!r}}}",
           f"experiment.exp_dir = {('/tmp/mtl_compare/' + name)!r}", ""]
  return write_experiment(path, lines)


def write_experiment(path, lines: Sequence[str]) -> pathlib.Path:
  """An experiment gin file (its folder made first); shared by the group proposals and select.py."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join(lines))
  return path
