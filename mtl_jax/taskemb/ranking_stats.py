"""Ranking scores with bootstrap CIs over targets and paired tests against DataSize and Random (#28 item 4).

The unit is the target: a method's score on a target is its metric averaged over the method's seeds
(TaskEmb runs, affinity runs, Random draws), and two methods are paired on the same targets. Per method
and metric: the mean over targets and a percentile bootstrap CI over targets; per (method, baseline):
the paired t-test over targets (primary) and the exact sign-flip p, Holm-adjusted over every comparison
of the report (mtl_jax.compare.stats, shared with mtl-compare / mtl-transfer / mtl-probe).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mtl_jax.compare import stats
from mtl_jax.taskemb.report import label

BASELINES = ("datasize", "random")
LOWER_IS_BETTER = ("regret", "rank_of_best")


def target_means(per_seed: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
  """[{target: {metric: v}} per seed] -> {target: {metric: mean over seeds}}."""
  targets = list(per_seed[0])
  return {t: {m: float(np.mean([s[t][m] for s in per_seed])) for m in per_seed[0][t]} for t in targets}


def summary(per_method: Mapping[str, Sequence[Mapping[str, Mapping[str, float]]]],
            metrics: Sequence[str] | None = None) -> dict:
  """{'rows': [{method, seeds, targets, metric: {mean, ci}}], 'comparisons': [paired tests, Holm-adjusted]}."""
  means = {m: target_means(v) for m, v in per_method.items()}
  targets = sorted(next(iter(means.values())))
  for method, rows in means.items():
    if sorted(rows) != targets:
      raise ValueError(f"method {method!r} was scored on targets {sorted(rows)}, others on {targets}: "
                       "score every method on the same targets")
  metrics = list(metrics or next(iter(next(iter(means.values())).values())))
  out_rows = []
  for method, rows in means.items():
    row = {"method": method, "seeds": len(per_method[method]), "targets": len(targets)}
    for metric in metrics:
      values = [rows[t][metric] for t in targets]
      row[metric] = {"mean": float(np.mean(values)), "ci": stats.bootstrap_ci(values)}
    out_rows.append(row)
  comparisons = []
  for base in BASELINES:
    if base not in means:
      continue
    for method in means:
      if method == base or (method == "random" and base == "datasize"):
        continue  # datasize vs random is asked once, as datasize's row
      for metric in metrics:
        a = [means[method][t][metric] for t in targets]
        b = [means[base][t][metric] for t in targets]
        c = stats.paired_test(a, b, higher_is_better=not metric.startswith(LOWER_IS_BETTER))
        comparisons.append({"method": method, "baseline": base, "metric": metric, **c})
  _holm(comparisons)
  return {"rows": out_rows, "comparisons": comparisons, "targets": targets, "metrics": metrics}


def _holm(comparisons: list[dict], alpha: float = stats.ALPHA) -> None:
  """stats.holm over the report's comparisons, with direction where significant. Not stats.adjust: its
  power figures (seeds_needed) raise on a zero mean difference (scipy root-finding on NaN), which
  rankings hit (two methods equal on every target)."""
  adjusted = stats.holm([c["p"] for c in comparisons])
  m = sum(p is not None for p in adjusted)
  for c, p_adj in zip(comparisons, adjusted):
    c.update(p_adj=p_adj, m=m, significant=p_adj is not None and p_adj < alpha)
    c["direction"] = int(np.sign(c["gain"])) if c["significant"] else 0


def _ci(cell: dict) -> str:
  lo, hi = cell["ci"]
  return f"{cell['mean']:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else f"{cell['mean']:.3f}"


def markdown(result: dict) -> str:
  """The table (mean [95% bootstrap CI over targets]) and the comparison table (Holm-adjusted)."""
  metrics = result["metrics"]
  head = "| method | seeds | " + " | ".join(
      f"{label(m)} {'↓' if m.startswith(LOWER_IS_BETTER) else '↑'}" for m in metrics) + " |"
  lines = [head, "|" + "---|" * (len(metrics) + 2)]
  for r in result["rows"]:
    lines.append(f"| {r['method']} | {r['seeds']} | " + " | ".join(_ci(r[m]) for m in metrics) + " |")
  lines += ["", f"Mean over {len(result['targets'])} targets [95% percentile bootstrap CI over targets]; a method's "
            "score on a target is averaged over its seeds first. Paired over targets: t-test (primary), exact "
            f"sign-flip p, Holm-Bonferroni over the {len(result['comparisons'])} comparisons below; ▲/▼ only where "
            "the adjusted p < 0.05 (direction: better / worse than the baseline).", "",
            "| method | vs | metric | difference [95% CI] | p | p sign-flip | p Holm | |",
            "|---|---|---|---|---|---|---|---|"]
  for c in result["comparisons"]:
    lo, hi = c["ci"]
    ci = f"{c['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) else f"{c['diff']:+.3f}"
    lines.append(f"| {c['method']} | {c['baseline']} | {c['metric']} | {ci} | {stats.fmt_p(c['p'])} | "
                 f"{stats.fmt_p(c['p_perm'])} | {stats.fmt_p(c['p_adj'])} | {stats.arrow(c)} |")
  return "\n".join(lines)
