"""Writes an experiment's results.csv, results.json and report.md (plots via plots.py).

Why three files: results.csv is one tidy row per (strategy, mixture, axes, task) for
spreadsheets; results.json keeps everything (cells, groups, definitions) for scripts;
report.md is what a person reads: means with 95% CIs, and ▲/▼ only where a paired test over
seeds stays significant after Holm's adjustment over the whole report (compare/stats.py).
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
from typing import Sequence

from mtl_jax.compare import aggregate as agg
from mtl_jax.compare import plots
from mtl_jax.compare import stats
from mtl_jax.compare import merge_arms, tune
from mtl_jax.compare.grid import SINGLE

CSV_COLUMNS = ["kind", "strategy", "mixture", "axes", "task", "metric", "lower_is_better", "n_seeds", "mean",
               "std", "ci_low", "ci_high", "boot_ci_low", "boot_ci_high", "single_mean", "single_std",
               "diff_vs_single", "diff_ci_low", "diff_ci_high", "rel_change_vs_single", "p_vs_single",
               "p_perm_vs_single", "p_adj_vs_single", "significant_vs_single", "detectable_diff",
               "seeds_needed", "params_total", "params_trainable", "steps_per_second", "wall_s"]
DEFINITIONS = {
    "headline": "each task's headline metric (mtl_jax.step.metrics.headline) on the held-out test split, from the "
                "checkpoint validation selected (validation where a run has no test split); average = unweighted mean",
    "std": "sample standard deviation over seeds (ddof=1); NaN/null with one seed",
    "delta_m": "(1/T) sum_t (-1)^l_t (M_mtl,t - M_single,t) / |M_single,t|, per seed, M_single = baseline "
               "mean over seeds, l_t = 1 if lower is better (Maninis et al. 2019); then mean ± std over seeds",
    "ci": "95% t interval of the mean over seeds (scipy.stats.t); boot_ci: percentile bootstrap over seeds "
          "(2,000 resamples, fixed seed); Δm's CI likewise over its per-seed values",
    "p": "paired t-test over the seeds both sides finished (scipy.stats.ttest_rel); p_perm: exact sign-flip "
         "permutation test (smallest possible two-sided p with n seeds: 2/2^n); fewer than 2 seeds: no test",
    "p_adj": "Holm-Bonferroni over every comparison of this report (each task vs single-task, each strategy "
             "vs the best); ▲/▼ only where p_adj < 0.05; all-equal scores have p = 1 (never worse)",
    "detectable / seeds needed": "for a non-significant comparison: the smallest difference a paired t-test "
                                 "with these n seeds and this SD of differences finds with 80% power at "
                                 "alpha 0.05/m (noncentral t), and the seeds that would find the observed one",
    "budget": "every cell runs the same TRAIN_STEPS x BATCH_SIZE, so a single-task baseline sees about T "
              "times more examples of its task than a T-task run",
    "single-task params / wall_s": "sum over the mixture's T single-task models",
    "steps_per_second": "median logged train steps/s, first log interval of each run (compilation) dropped",
}


def _clean(value):
  """JSON-safe: NaN/inf -> None, tuples -> lists, recursively."""
  if isinstance(value, float):
    return None if math.isnan(value) or math.isinf(value) else value
  if isinstance(value, dict):
    return {str(k): _clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_clean(v) for v in value]
  return value


def _num(x, digits: int = 4):
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return ""
  return int(round(float(x))) if digits == 0 else round(float(x), digits)


def axes_text(axes: dict) -> str:
  return ";".join(f"{k}={v}" for k, v in axes.items())


def csv_rows(groups: Sequence[dict]) -> list[dict]:
  rows = []
  for g in groups:
    common = {"kind": g["kind"], "strategy": g["strategy"], "mixture": g["mixture"], "axes": axes_text(g["axes"]),
              "params_total": _num(g["params_total"], 0),
              "params_trainable": _num(g.get("params_trainable"), 0), "steps_per_second": _num(g["steps_per_second"], 2),
              "wall_s": _num(g["wall_s"], 1)}
    for task, t in sorted(g["tasks"].items()):
      c = t.get("vs_single") or {}
      rows.append({**common, "task": task, "metric": t["metric"], "lower_is_better": int(t["lower_is_better"]),
                   "n_seeds": t["n"], **_interval_cols(t),
                   "single_mean": _num(t.get("single_mean")), "single_std": _num(t.get("single_std")),
                   "diff_vs_single": _num(t.get("diff")), "rel_change_vs_single": _num(t.get("rel_change")),
                   "diff_ci_low": _num(c.get("ci", (None,))[0]), "diff_ci_high": _num(c.get("ci", (None, None))[1]),
                   "p_vs_single": _num(c.get("p"), 6), "p_perm_vs_single": _num(c.get("p_perm"), 6),
                   "p_adj_vs_single": _num(c.get("p_adj"), 6),
                   "significant_vs_single": "" if c.get("p_adj") is None else c["direction"],
                   "detectable_diff": _num(c.get("detectable")), "seeds_needed": _num(c.get("seeds_needed"), 0)})
    for name in ("average", "delta_m"):
      s = g[name]
      rows.append({**common, "task": name, "metric": name, "lower_is_better": 0, "n_seeds": s["n"],
                   **_interval_cols(s)})
  return rows


def _interval_cols(s: dict) -> dict:
  ci, boot = s.get("ci") or (None, None), s.get("boot_ci") or (None, None)
  return {"mean": _num(s["mean"]), "std": _num(s["std"]), "ci_low": _num(ci[0]), "ci_high": _num(ci[1]),
          "boot_ci_low": _num(boot[0]), "boot_ci_high": _num(boot[1])}


def write_csv(path, groups) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(csv_rows(groups))


# ---------------------------------------------------------------------------- markdown

def pm(mean, std, digits: int = 3, scale: float = 1.0, sign: bool = False) -> str:
  if mean is None or math.isnan(mean):
    return "–"
  fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
  text = fmt.format(scale * mean)
  return text + (" ± n/a" if std is None or math.isnan(std) else f" ± {scale * std:.{digits}f}")


def pm_ci(stat: dict, digits: int = 3, scale: float = 1.0, sign: bool = False) -> str:
  """mean ± half-width of the 95% t interval ('± n/a' with one seed)."""
  lo, hi = stat.get("ci") or (math.nan, math.nan)
  half = math.nan if lo is None or hi is None else (hi - lo) / 2
  return pm(stat["mean"], half, digits, scale, sign)


def _boot(stat: dict, scale: float = 1.0) -> str:
  """' [lo, hi]': the percentile bootstrap CI over seeds ('' when undefined)."""
  lo, hi = stat.get("boot_ci") or (None, None)
  if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
    return ""
  return f" [{scale * lo:+.2f}, {scale * hi:+.2f}]"


def _vs_best(g: dict) -> str:
  c = g.get("vs_best")
  if g.get("is_best"):
    return "**best**"
  if not c:
    return "–"
  if c.get("p") is None:
    return c["note"]
  mark = "▼" if c["direction"] < 0 else "n.s."
  return f"{mark} (p_adj {stats.fmt_p(c['p_adj'])})"


def _order(strategies: Sequence[str], present) -> list[str]:
  present = list(dict.fromkeys(present))
  return [SINGLE] * (SINGLE in present) + [s for s in strategies if s in present and s != SINGLE] + \
      [s for s in present if s not in strategies and s != SINGLE]


def _summary_table(members: dict, order) -> list[str]:
  lines = ["| strategy | average headline | Δm (%) | vs best | params | trainable | steps/s | wall s (per run) "
           "| seeds |", "|---|---|---|---|---|---|---|---|---|"]
  for s in order:
    g = members[s]
    dm = "0 (reference)" if s == SINGLE else pm_ci(g["delta_m"], 2, 100, sign=True) + _boot(g["delta_m"], 100)
    params = "–" if g["params_total"] is None else f"{g['params_total']:,.0f}" + (" (sum)" if s == SINGLE else "")
    trainable = g.get("params_trainable")
    train = "–" if trainable is None else f"{trainable:,.0f}"
    sps = "–" if g["steps_per_second"] is None else f"{g['steps_per_second']:.1f}"
    wall = "–" if g["wall_s"] is None else f"{g['wall_s']:.0f}" + (" (sum)" if s == SINGLE else "")
    lines.append(f"| {plots.label(s)} | {pm_ci(g['average'])} | {dm} | {_vs_best(g)} | {params} "
                 f"| {train} | {sps} | {wall} | {len(g['seeds'])} |")
  return lines


MAX_TASK_ROWS = 24  # more tasks than this: per-family table + best / worst tasks; all of them in results.csv


def _family_tables(members: dict, order, tasks) -> list[str]:
  """Readable at 128 tasks: one row per family per strategy, then each strategy's best / worst."""
  lines = [f"{len(tasks)} tasks: per-family aggregates below; every task's row is in results.csv.", "",
           "| family | strategy | tasks | mean headline | gain vs single | ▲ / ▼ (Holm p_adj < 0.05) |",
           "|---|---|---|---|---|---|"]
  for s in order:
    for row in agg.family_summary(members[s]):
      gain = "–" if row["gain_vs_single"] is None else f"{row['gain_vs_single']:+.4f}"
      lines.append(f"| {row['family']} | {plots.label(s)} | {row['tasks']} | {row['mean']:.4f} | {gain} "
                   f"| {row['better']} / {row['worse']} |")
  lines += ["", "| strategy | best tasks | worst tasks |", "|---|---|---|"]
  for s in order:
    best, worst = agg.best_and_worst(members[s])
    fmt = lambda names: ", ".join(f"{n} ({members[s]['tasks'][n]['mean']:.3f})" for n in names)
    lines.append(f"| {plots.label(s)} | {fmt(best)} | {fmt(worst)} |")
  return lines


def _task_table(members: dict, order) -> list[str]:
  tasks = sorted({t for s in order for t in members[s]["tasks"]})
  if not tasks:
    return []
  if len(tasks) > MAX_TASK_ROWS:
    return _family_tables(members, order, tasks)
  lines = ["| task (metric) | " + " | ".join(plots.label(s) for s in order) + " |",
           "|---|" + "---|" * len(order)]
  for task in tasks:
    first = next(members[s]["tasks"][task] for s in order if task in members[s]["tasks"])
    metric = first["metric"] + (", lower is better" if first["lower_is_better"] else "")
    cells = []
    for s in order:
      t = members[s]["tasks"].get(task)
      if not t:
        cells.append("–")
        continue
      text = pm_ci(t)
      if s != SINGLE and t.get("vs_single"):
        text += " " + stats.arrow(t["vs_single"])
      cells.append(text)
    lines.append(f"| {task} ({metric}) | " + " | ".join(cells) + " |")
  return lines


def _comparison_table(members: dict, order) -> list[str]:
  """Each task of each strategy vs single-task: the difference with its CI, both p-values,
  Holm's p and, for the non-significant ones, what this design could have detected."""
  rows = [(s, task, t) for s in order if s != SINGLE for task, t in sorted(members[s]["tasks"].items())
          if t.get("vs_single")]
  if not rows or len({task for _, task, _ in rows}) > MAX_TASK_ROWS:
    return []
  lines = ["| strategy | task | diff vs single [95% CI] | p (t) | p (sign flip) | p adj (Holm) | | "
           "detectable at 80% | seeds needed |", "|---|---|---|---|---|---|---|---|---|"]
  for s, task, t in rows:
    c = t["vs_single"]
    ci = "" if c["p"] is None else f" [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
    det = "–" if c.get("detectable") is None else f"{c['detectable']:.3f}"
    need = "–" if c.get("seeds_needed") is None else str(c["seeds_needed"])
    lines.append(f"| {plots.label(s)} | {task} | {c['diff']:+.3f}{ci} | {stats.fmt_p(c['p'])} "
                 f"| {stats.fmt_p(c['p_perm'])} | {stats.fmt_p(c.get('p_adj'))} | {stats.arrow(c)} | {det} | {need} |")
  return lines


def power_line(comparisons) -> str:
  """One sentence on what the non-significant comparisons could have detected."""
  ns = [c for c in comparisons if c.get("p") is not None and not c["significant"]]
  if not ns:
    return ""
  det = sorted(c["detectable"] for c in ns if c.get("detectable") is not None)
  need = sorted(c["seeds_needed"] for c in ns if c.get("seeds_needed") is not None)
  text = (f"Power: {len(ns)} of {len(comparisons)} comparisons are not significant; with their seeds, differences "
          f"below {det[len(det) // 2]:.3f} (median; range {det[0]:.3f}-{det[-1]:.3f}) were unlikely to be detected "
          "(80% power)") if det else f"Power: {len(ns)} of {len(comparisons)} comparisons are not significant"
  if need:
    text += f"; finding the observed differences would take a median of {need[len(need) // 2]} seeds"
  return text + "."


def _sweep_tables(groups, strategies) -> list[str]:
  lines = []
  for (num_tasks, axes), series in sorted(plots.relatedness_sweeps(groups).items()):
    rs = sorted({p[0] for pts in series.values() for p in pts})
    lines += ["", f"### Δm (%) vs relatedness, T={num_tasks}" + "".join(f", {k}={v}" for k, v in axes), "",
              "| strategy | " + " | ".join(f"r={r:g}" for r in rs) + " |", "|---|" + "---|" * len(rs)]
    for s in _order(strategies, series):
      by_r = {p[0]: p for p in series[s]}
      lines.append(f"| {plots.label(s)} | " + " | ".join(
          pm(by_r[r][1], by_r[r][2], 2, 100, sign=True) if r in by_r else "–" for r in rs) + " |")
  return lines


def _rel(path, root) -> str:
  return os.path.relpath(path, root).replace(os.sep, "/")


def markdown(spec: dict, cells: Sequence[dict], result: dict, plot_paths: dict, notes: Sequence[str],
             exp_dir, picks: Sequence[dict] = (), splits: Sequence[str] = ()) -> str:
  groups, strategies = result["groups"], list(spec.get("strategies", []))
  status = {}
  for c in cells:
    status[c["status"]] = status.get(c["status"], 0) + 1
  lines = [f"# mtl-compare: {spec.get('name', 'experiment')}", ""]
  if spec.get("description"):
    lines += [spec["description"], ""]
  lines += [f"- cells: {len(cells)} (" + ", ".join(f"{v} {k}" for k, v in sorted(status.items())) + ")",
            f"- strategies: {', '.join(strategies)}; single-task baselines: "
            f"{'yes (' + spec.get('baseline_strategy', 'hard') + ' sharing)' if spec.get('baselines') else 'no'}",
            f"- mixtures: {', '.join(spec.get('mixtures', []))}; seeds: {', '.join(map(str, spec.get('seeds', [])))}",
            f"- every cell: gin files {', '.join(spec.get('gin_files', []))}; bindings "
            + (", ".join(f"{k}={v}" for k, v in spec.get("bindings", {}).items()) or "none")]
  if spec.get("axes"):
    lines.append("- axes: " + "; ".join(f"{k} in {v}" for k, v in spec["axes"].items()))
  if spec.get("tune"):
    lines.append("- tuned on validation (see Tuned arms): " + "; ".join(f"{k} in {v}" for k, v in spec["tune"].items()))
  if splits:
    lines.append("- scores compared: " + " and ".join(sorted(set(splits))) + " split"
                 + (" (final step)" if set(splits) == {"validation"} else " (the checkpoint validation selected)"))
  family = agg.all_comparisons(groups)
  n_seeds = max([len(g["seeds"]) for g in groups] or [0])
  lines += ["", "How the numbers were computed: " + stats.method_paragraph(n_seeds, len(family)),
            "", "Marks: **best** = highest Δm (or average when Δm is unknown) in its comparison; ± = half-width "
            "of the 95% t interval over seeds; [a, b] after Δm = its bootstrap CI over seeds; ▲/▼ = significantly better / worse than single-task (per task) "
            "or than the best (summary), Holm-adjusted p < 0.05; n.s. = not significant. Definitions are at "
            "the end."]
  power = power_line(family)
  if power:
    lines += ["", power]
  for mixture, axes in agg.comparisons(groups):
    members = {g["strategy"]: g for g in groups if g["mixture"] == mixture and g["axes"] == axes}
    order = _order(strategies, members)
    where = mixture + "".join(f", {k}={v}" for k, v in axes.items())
    lines += ["", f"## {where}", "", *_summary_table(members, order), "", *_task_table(members, order)]
    table = _comparison_table(members, order)
    lines += [""] * bool(table) + table
    missing = [m for g in members.values() for m in g["missing"]]
    if missing:
      lines += ["", f"Not finished (left out of the statistics): {', '.join(missing)}"]
    nobase = sorted({t for g in members.values() for t in g["baselines_missing"]})
    if nobase:
      lines += ["", f"No finished single-task baseline for {', '.join(nobase)}: Δm unknown."]
    for path in plot_paths.get((mixture, tuple(axes.items())), []):
      lines += ["", f"![{os.path.basename(path)}]({_rel(path, exp_dir)})"]
  tuned = tune.markdown(picks, spec.get("tune") or {})
  lines += [""] * bool(tuned) + tuned
  merged = merge_arms.markdown(cells)
  lines += [""] * bool(merged) + merged
  sweep = _sweep_tables(groups, strategies)
  if sweep:
    lines += ["", "## Synthetic relatedness sweep", *sweep]
    for path in plot_paths.get("sweep", []):
      lines += ["", f"![{os.path.basename(path)}]({_rel(path, exp_dir)})"]
  lines += ["", "## Mixing weights", ""]
  if plot_paths.get("mixing"):
    lines += ["From MODEL_DIR/mixing_weights.json of each group's lowest finished seed."]
    lines += [f"\n![{os.path.basename(p)}]({_rel(p, exp_dir)})" for p in plot_paths["mixing"]]
  mixing_notes = [n for n in notes if "mixing" in n]
  lines += [""] * bool(mixing_notes) + [f"- {n}" for n in mixing_notes]
  if not plot_paths.get("mixing") and not mixing_notes:
    lines.append("No strategy with mixing weights in this experiment.")
  other = [n for n in notes if n not in mixing_notes]
  if other:
    lines += ["", "## Notes", *(f"- {n}" for n in other)]
  failed = [c for c in cells if c["status"] == "failed"]
  if failed:
    lines += ["", "## Failed cells", *(f"- {c['cell_id']}: see {_rel(c['model_dir'], exp_dir)}/train.log"
                                          for c in failed)]
  lines += ["", "## Definitions", *(f"- {k}: {v}" for k, v in DEFINITIONS.items()), ""]
  return "\n".join(lines)


def write_all(exp_dir, spec: dict, cells: Sequence[dict], strategies_order: Sequence[str] | None = None,
              mtl_only_axes: Sequence[str] = ()) -> dict:
  """Aggregates collected cells and writes results.csv/json, report.md and plots/*.png.
  Returns {'files': [...], 'result': aggregate}."""
  exp_dir = pathlib.Path(exp_dir)
  plot_dir = exp_dir / "plots"
  plot_dir.mkdir(parents=True, exist_ok=True)
  every_cell = cells
  cells, picks = tune.select(cells, tune.keys_of(cells, spec))  # tuned arms: the validation pick only
  result = agg.aggregate(cells, mtl_only_axes)
  strategies = [SINGLE, *(strategies_order or spec.get("strategies", []))]
  axis_names = list(dict.fromkeys(k for c in cells for k in c["axes"]))
  baseline_axes = [a for a in axis_names if a not in mtl_only_axes]
  plot_paths: dict = {}
  for mixture, axes in agg.comparisons(result["groups"]):
    made = [plots.learning_curves(cells, mixture, axes, strategies, baseline_axes, plot_dir),
            plots.bar_chart(result["groups"], mixture, axes, strategies, plot_dir)]
    plot_paths[(mixture, tuple(axes.items()))] = [p for p in made if p]
  plot_paths["sweep"] = plots.delta_m_vs_relatedness(result["groups"], strategies, plot_dir)
  plot_paths["mixing"], notes = plots.mixing_plots(cells, result["groups"], plot_dir)
  splits = [c["split"] for c in cells if c["status"] == "done"]
  (exp_dir / "report.md").write_text(markdown(spec, every_cell, result, plot_paths, notes, exp_dir, picks, splits))
  write_csv(exp_dir / "results.csv", result["groups"])
  every_plot = [p for v in plot_paths.values() for p in v]
  payload = {"experiment": spec, "definitions": DEFINITIONS,
             "cells": [{k: v for k, v in c.items() if k not in ("history", "mixing_weights")} for c in every_cell],
             "tuning": picks,
             "groups": result["groups"], "baselines": result["baselines"],
             "plots": [_rel(p, exp_dir) for p in every_plot], "notes": notes}
  (exp_dir / "results.json").write_text(json.dumps(_clean(payload), indent=1, sort_keys=True))
  files = [str(exp_dir / n) for n in ("results.csv", "results.json", "report.md")] + every_plot
  return {"files": files, "result": result, "notes": notes}
