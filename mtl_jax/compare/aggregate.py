"""Seed statistics, delta-m against single-task baselines, and paired significance tests.

Definitions (also printed in report.md):
  * mean ± std over seeds: std is the sample standard deviation (ddof=1); NaN with one seed;
    'ci' is the 95% t interval over seeds, 'boot_ci' a percentile bootstrap over seeds.
  * delta-m (Maninis et al. 2019), per multi-task run:
        delta_m = (1/T) sum_t (-1)^{l_t} (M_mtl,t - M_single,t) / |M_single,t|
    with M the task's headline metric, l_t = 1 if lower is better, and M_single,t the
    single-task baseline's mean over seeds (same axes, same budget). One value per seed,
    then mean ± std over seeds. |.| in the denominator keeps the sign meaningful when a
    baseline score is negative (e.g. a Pearson below 0); it is the plain formula otherwise.
  * significance (compare/stats.py): every arm vs single-task per task ('vs_single') and every
    strategy vs the comparison's best on delta-m / average ('vs_best') is a paired test over the
    seeds both sides finished; Holm over ALL these comparisons of one experiment; a direction is
    claimed only where the adjusted p < 0.05 (equal scores: p = 1, never worse).
Only cells with status 'done' are aggregated; the rest are listed as missing.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Mapping, Sequence

from mtl_jax.compare import stats
from mtl_jax.compare.grid import SINGLE

NAN = float("nan")


def _trainable(params: dict | None):
  """The start line's trainable count (older logs have none: every parameter trained)."""
  return None if not params else params.get("trainable", params.get("total"))


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
  """(mean, sample std with ddof=1, n); std is NaN for n < 2, both NaN for n == 0."""
  vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
  if not vals:
    return NAN, NAN, 0
  return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else NAN), len(vals)


def relative_change(mtl: float, single: float, lower_is_better: bool = False) -> float:
  """(-1)^l (mtl - single) / |single|; NaN if the baseline is 0."""
  if single == 0 or math.isnan(single):
    return NAN
  sign = -1.0 if lower_is_better else 1.0
  return sign * (mtl - single) / abs(single)


def delta_m(mtl: Mapping[str, float], single: Mapping[str, float],
            lower_is_better: Mapping[str, bool] | None = None) -> float:
  """Mean relative change over mtl's tasks; NaN if any task has no baseline."""
  lower_is_better = lower_is_better or {}
  if not mtl or any(t not in single for t in mtl):
    return NAN
  return statistics.fmean(relative_change(mtl[t], single[t], lower_is_better.get(t, False)) for t in mtl)


def _axes_key(axes: Mapping[str, str], names: Sequence[str] | None = None) -> tuple:
  return tuple((k, v) for k, v in axes.items() if names is None or k in names)


def _stat(values, seeds=None) -> dict:
  """mean / std / n / values, the t and bootstrap CIs, and by_seed when the seeds are known."""
  mean, std, n = mean_std(values)
  out = {"mean": mean, "std": std, "n": n, "values": [float(v) for v in values],
         "ci": stats.t_interval(values), "boot_ci": stats.bootstrap_ci(values)}
  if seeds is not None:
    out["by_seed"] = dict(zip(seeds, out["values"]))
  return out


def _mean_or_none(values):
  vals = [v for v in values if v is not None]
  return statistics.fmean(vals) if vals else None


def baselines(cells: Sequence[dict], baseline_axes: Sequence[str] | None = None) -> dict:
  """{(task, axes key): stats} over the finished single-task cells."""
  by_key: dict = {}
  for c in cells:
    if c["kind"] == "single" and c["status"] == "done" and c["mixture"] in c["tasks"]:
      by_key.setdefault((c["mixture"], _axes_key(c["axes"], baseline_axes)), []).append(c)
  out = {}
  for (task, axes), group in sorted(by_key.items()):
    score = [g["tasks"][task] for g in group]
    out[(task, axes)] = {
        "task": task, "axes": dict(axes), "metric": score[0]["metric"],
        "lower_is_better": score[0]["lower_is_better"], "seeds": [g["seed"] for g in group],
        **_stat([s["value"] for s in score], [g["seed"] for g in group]),
        "params_total": _mean_or_none((g["params"] or {}).get("total") for g in group),
        "params_trainable": _mean_or_none(_trainable(g["params"]) for g in group),
        "steps_per_second": _mean_or_none(g["steps_per_second"] for g in group),
        "wall_s": _mean_or_none(g["wall_s"] for g in group),
    }
  return out


def aggregate(cells: Sequence[dict], mtl_only_axes: Sequence[str] = ()) -> dict:
  """{'baselines': [...], 'groups': [...]}: one group per (strategy, mixture, axes) plus one
  'single' group per (mixture, axes) assembled from its tasks' baselines."""
  axis_names = list(dict.fromkeys(k for c in cells for k in c["axes"]))
  baseline_axes = [a for a in axis_names if a not in mtl_only_axes]
  base = baselines(cells, baseline_axes)
  by_group: dict = {}
  for c in cells:
    if c["kind"] == "mtl":
      by_group.setdefault((c["mixture"], _axes_key(c["axes"]), c["strategy"]), []).append(c)
  groups = []
  for (mixture, axes, strategy), members in by_group.items():
    done = [c for c in members if c["status"] == "done"]
    bkey = _axes_key(dict(axes), baseline_axes)
    tasks = sorted({t for c in done for t in c["tasks"]})
    group = {"strategy": strategy, "mixture": mixture, "axes": dict(axes), "kind": "mtl",
             "seeds": [c["seed"] for c in done],
             "missing": [c["cell_id"] for c in members if c["status"] != "done"], "tasks": {}}
    singles = {t: base.get((t, bkey)) for t in tasks}
    for t in tasks:
      having = [c for c in done if t in c["tasks"]]
      scores = [c["tasks"][t] for c in having]
      entry = {"metric": scores[0]["metric"], "lower_is_better": scores[0]["lower_is_better"],
               **_stat([s["value"] for s in scores], [c["seed"] for c in having])}
      b = singles[t]
      if b:
        entry.update(single_mean=b["mean"], single_std=b["std"], diff=entry["mean"] - b["mean"],
                     rel_change=relative_change(entry["mean"], b["mean"], entry["lower_is_better"]))
        entry["vs_single"] = stats.paired_by_seed(entry["by_seed"], b["by_seed"],
                                                  higher_is_better=not entry["lower_is_better"])
      group["tasks"][t] = entry
    seeds = [c["seed"] for c in done]
    group["average"] = _stat([c["average"] for c in done], seeds)
    have_all = tasks and all(singles.values())
    single_means = {t: singles[t]["mean"] for t in tasks} if have_all else {}
    lower = {t: group["tasks"][t]["lower_is_better"] for t in tasks}
    group["delta_m"] = _stat([delta_m({t: c["tasks"][t]["value"] for t in c["tasks"]}, single_means, lower)
                              for c in done], seeds) if have_all else _stat([], [])
    group["baselines_missing"] = [t for t in tasks if not singles[t]]
    group["params_total"] = _mean_or_none((c["params"] or {}).get("total") for c in done)
    group["params_trainable"] = _mean_or_none(_trainable(c["params"]) for c in done)
    group["steps_per_second"] = _mean_or_none(c["steps_per_second"] for c in done)
    group["wall_s"] = _mean_or_none(c["wall_s"] for c in done)
    groups.append(group)
  groups += _single_groups(groups, base, baseline_axes)
  _mark_best(groups)
  stats.adjust(all_comparisons(groups))
  return {"baselines": list(base.values()), "groups": groups}


def all_comparisons(groups: Sequence[dict]) -> list[dict]:
  """Every paired comparison of one experiment (task vs single-task, strategy vs best): the
  family Holm adjusts over, so adding strategies or tasks makes every claim stricter."""
  out = [t["vs_single"] for g in groups for t in g["tasks"].values() if "vs_single" in t]
  return out + [g["vs_best"] for g in groups if g.get("vs_best")]


def _single_groups(groups, base, baseline_axes) -> list[dict]:
  """The single-task 'strategy' of each (mixture, axes): its tasks' baselines side by side.
  Its average is taken per seed (mean over tasks of that seed's baselines); its delta-m is 0
  by definition; params / wall time are the sum over its T separate models."""
  out, seen = [], set()
  for g in groups:
    key = (g["mixture"], tuple(g["axes"].items()))
    if key in seen or not g["tasks"]:
      continue
    seen.add(key)
    bkey = _axes_key(g["axes"], baseline_axes)
    singles = {t: base.get((t, bkey)) for t in g["tasks"]}
    if not all(singles.values()):
      continue
    seeds = sorted(set.intersection(*(set(b["by_seed"]) for b in singles.values())))
    per_seed_avg = [statistics.fmean(b["by_seed"][s] for b in singles.values()) for s in seeds]
    tasks = {t: {k: b[k] for k in ("metric", "lower_is_better", "mean", "std", "n", "values", "ci", "boot_ci",
                                    "by_seed")} for t, b in singles.items()}
    sums = {k: (sum(b[k] for b in singles.values()) if all(b[k] is not None for b in singles.values())
                else None) for k in ("params_total", "params_trainable", "wall_s")}
    out.append({"strategy": SINGLE, "mixture": g["mixture"], "axes": dict(g["axes"]), "kind": "single",
                "seeds": seeds, "missing": [], "tasks": tasks, "average": _stat(per_seed_avg, seeds),
                "delta_m": {**_stat([0.0] * len(seeds), seeds), "std": 0.0},
                "baselines_missing": [], "params_total": sums["params_total"],
                "params_trainable": sums["params_trainable"],
                "steps_per_second": _mean_or_none(b["steps_per_second"] for b in singles.values()),
                "wall_s": sums["wall_s"]})
  return out


def _mark_best(groups) -> None:
  """Per (mixture, axes): the best strategy by delta-m (by average when delta-m is unknown),
  and for every other one the paired test of its per-seed score against the best's ('vs_best',
  Holm-adjusted later with the rest of the experiment)."""
  by_cmp: dict = {}
  for g in groups:
    by_cmp.setdefault((g["mixture"], tuple(g["axes"].items())), []).append(g)
  for members in by_cmp.values():
    key = "delta_m" if all(not math.isnan(g["delta_m"]["mean"]) for g in members) else "average"
    ranked = [g for g in members if not math.isnan(g[key]["mean"])]
    if not ranked:
      continue
    best = max(ranked, key=lambda g: g[key]["mean"])
    for g in members:
      g["ranked_by"] = key
      g["is_best"] = g is best
      g["vs_best"] = None if g is best else stats.paired_by_seed(g[key]["by_seed"], best[key]["by_seed"])


def comparisons(groups: Sequence[dict]) -> list[tuple]:
  """The distinct (mixture, axes dict) comparisons, in first-seen order."""
  seen = {}
  for g in groups:
    seen.setdefault((g["mixture"], tuple(g["axes"].items())), dict(g["axes"]))
  return [(m, axes) for (m, _), axes in seen.items()]


# ------------------------------------------------------------- many tasks (100+): families

FAMILY_SIZE = 16  # mtl_jax.data.synthetic.FAMILY_SIZE: the 128-task mixtures' family blocks


def family_of(task: str) -> str:
  """A task's family for per-family tables: the offline catalogue's families, the synthetic
  mixtures' blocks of 16 ('..._t128_task37' -> 'family2'), else the name before its first '_'."""
  import re
  m = re.match(r"^synthetic_r\d+_t(\d+)_task(\d+)$", task)
  if m:
    return f"family{int(m.group(2)) // FAMILY_SIZE}"
  try:
    from tasks import offline_families  # registered offline tasks; absent in spec-only use
    return offline_families.family_of(task)
  except (ImportError, StopIteration):
    return task.split("_", 1)[0]


def family_summary(group: dict) -> list[dict]:
  """Per family of a group's tasks: task count, mean of the task means, mean difference vs
  single-task (where known) and how many tasks are significantly better / worse (Holm)."""
  fams: dict = {}
  for task, t in group["tasks"].items():
    fams.setdefault(family_of(task), []).append(t)
  rows = []
  for fam, ts in sorted(fams.items()):
    diffs = [t["diff"] * (-1 if t["lower_is_better"] else 1) for t in ts if t.get("diff") is not None]
    direction = [(t.get("vs_single") or {}).get("direction", 0) for t in ts]
    rows.append({"family": fam, "tasks": len(ts), "mean": statistics.fmean(t["mean"] for t in ts),
                 "gain_vs_single": statistics.fmean(diffs) if diffs else None,
                 "better": direction.count(1), "worse": direction.count(-1)})
  return rows


def best_and_worst(group: dict, k: int = 5) -> tuple[list[str], list[str]]:
  """The k tasks gaining most and least vs single-task (by the sign-corrected difference), or by
  the task mean when there are no baselines."""
  def score(item):
    t = item[1]
    if t.get("diff") is not None:
      return t["diff"] * (-1 if t["lower_is_better"] else 1)
    return -t["mean"] if t["lower_is_better"] else t["mean"]
  ranked = [name for name, _ in sorted(group["tasks"].items(), key=lambda it: (-score(it), it[0]))]
  return ranked[:k], ranked[::-1][:k]
