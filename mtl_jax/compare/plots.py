"""PNG plots of an experiment (matplotlib, Agg canvas; no pyplot global state).

Why these: learning curves show whether a strategy is still improving at the budget;
bars with seed error bars show which differences are real; delta-m vs relatedness is the
flagship question; the mixing-weight plots show what sluice / cross-stitch / MMoE learned
to share (from MODEL_DIR/mixing_weights.json, written by the trainer when present).
Every function returns the written paths; nothing here decides what is significant.
"""

from __future__ import annotations

import math
import os
import re
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtl_jax.compare.grid import SINGLE, slug

SINGLE_LABEL = "single-task"
_ALPHA = re.compile(r"^(sluice|cross_stitch|adapter_fusion)/(alpha|attention)/layer_(\d+)$")
_SYNTHETIC = re.compile(r"^synthetic_r(\d+)_t(\d+)$")
MIXING_STRATEGIES = ("sluice", "cross_stitch", "mmoe", "adapter_fusion")


def label(strategy: str) -> str:
  return SINGLE_LABEL if strategy == SINGLE else strategy


def colors(strategies: Sequence[str]) -> dict:
  """One fixed colour per strategy (single-task is always grey) across every plot."""
  palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
             "#17becf", "#393b79"]
  others = [s for s in strategies if s != SINGLE]
  out = {s: palette[i % len(palette)] for i, s in enumerate(others)}
  out[SINGLE] = "#7f7f7f"
  return out


def short_names(tasks: Sequence[str]) -> dict:
  """Task names without the prefix they all share (synthetic_r50_t2_task0 -> task0)."""
  if len(tasks) < 2:
    return {t: t for t in tasks}
  prefix = os.path.commonprefix(list(tasks))
  prefix = prefix[:prefix.rfind("_") + 1]
  return {t: t[len(prefix):] or t for t in tasks}


def _save(fig: Figure, path) -> str:
  FigureCanvasAgg(fig)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return str(path)


def _grid(n: int) -> tuple[int, int]:
  cols = min(n, 4 if n > 6 else 3)
  return math.ceil(n / cols), cols


def _suffix(mixture: str, axes: Mapping[str, str]) -> str:
  return "__".join([slug(mixture), *(slug(f"{k.split('.')[-1]}={v}") for k, v in axes.items())])


def _title(mixture: str, axes: Mapping[str, str]) -> str:
  return mixture + "".join(f", {k.split('.')[-1]}={v}" for k, v in axes.items())


# ----------------------------------------------------------------------------- curves

def _curve(histories: Sequence[list], task: str):
  """Mean and std over seeds at the steps every seed evaluated."""
  per_seed = [{h["step"]: h["tasks"][task] for h in hist if task in h["tasks"]} for hist in histories]
  per_seed = [p for p in per_seed if p]
  if not per_seed:
    return None
  steps = sorted(set.intersection(*(set(p) for p in per_seed)))
  if not steps:
    return None
  values = np.array([[p[s] for s in steps] for p in per_seed])
  std = values.std(axis=0, ddof=1) if len(per_seed) > 1 else np.zeros(len(steps))
  return np.array(steps), values.mean(axis=0), std


def learning_curves(cells: Sequence[dict], mixture: str, axes: Mapping[str, str], strategies: Sequence[str],
                    baseline_axes: Sequence[str], out_dir) -> str | None:
  """One panel per task: headline vs step, a line (mean, ±std band) per strategy;
  single-task baselines dashed."""
  mtl = [c for c in cells if c["kind"] == "mtl" and c["mixture"] == mixture and c["axes"] == dict(axes)
         and c["history"]]
  tasks = sorted({t for c in mtl for h in c["history"] for t in h["tasks"]})
  if not tasks:
    return None
  baxes = {k: v for k, v in axes.items() if k in baseline_axes}
  color, names = colors(strategies), short_names(tasks)
  rows, cols = _grid(len(tasks))
  fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
  for i, task in enumerate(tasks):
    ax = fig.add_subplot(rows, cols, i + 1)
    for strategy in strategies:
      if strategy == SINGLE:
        hist = [c["history"] for c in cells if c["kind"] == "single" and c["mixture"] == task
                and c["axes"] == baxes and c["history"]]
      else:
        hist = [c["history"] for c in mtl if c["strategy"] == strategy]
      curve = _curve(hist, task)
      if curve is None:
        continue
      steps, mean, std = curve
      style = "--" if strategy == SINGLE else "-"
      ax.plot(steps, mean, style, color=color[strategy], label=f"{label(strategy)} (n={len(hist)})", marker=".")
      ax.fill_between(steps, mean - std, mean + std, color=color[strategy], alpha=0.15, linewidth=0)
    ax.set_title(names[task], fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel("headline (validation)")
    ax.grid(alpha=0.3)
    if i == 0:
      ax.legend(fontsize=7)
  fig.suptitle(f"learning curves: {_title(mixture, axes)} (mean ± std over seeds)", fontsize=11)
  return _save(fig, os.path.join(out_dir, f"curves__{_suffix(mixture, axes)}.png"))


# ------------------------------------------------------------------------------- bars

def bar_chart(groups: Sequence[dict], mixture: str, axes: Mapping[str, str], strategies: Sequence[str],
              out_dir) -> str | None:
  """Per-task (and average) headline means with ±std error bars, one bar per strategy."""
  members = {g["strategy"]: g for g in groups if g["mixture"] == mixture and g["axes"] == dict(axes)}
  order = [s for s in strategies if s in members and members[s]["tasks"]]
  if not order:
    return None
  tasks = sorted({t for s in order for t in members[s]["tasks"]})
  xs = [*tasks, "average"]  # full task names, as report.md's table has them
  color = colors(strategies)
  width = 0.8 / len(order)
  fig = Figure(figsize=(max(6.0, 1.1 * len(xs) * max(1, len(order)) * 0.45 + 2) + 1.5, 4.2))  # + the legend
  ax = fig.add_subplot(1, 1, 1)
  for j, s in enumerate(order):
    g = members[s]
    stats = [g["tasks"].get(t, {}) for t in tasks] + [g["average"]]
    means = [st.get("mean", np.nan) for st in stats]
    errs = [0.0 if st.get("std") is None or math.isnan(st.get("std", np.nan)) else st["std"] for st in stats]
    pos = np.arange(len(xs)) - 0.4 + width * (j + 0.5)
    ax.bar(pos, means, width, yerr=errs, capsize=3, color=color[s], ecolor="black",
           label=f"{label(s)} (n={len(g['seeds'])})")
  ax.set_xticks(np.arange(len(xs)))
  crowded = len(xs) > 5 or sum(map(len, xs)) > 60
  ax.set_xticklabels(xs, rotation=30 if crowded else 0, ha="right" if crowded else "center")
  ax.set_ylabel("headline metric (validation)")
  ax.set_title(f"{_title(mixture, axes)}: mean ± std over seeds")
  ax.axhline(0, color="grey", linewidth=0.5)
  ax.grid(axis="y", alpha=0.3)
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside, never on bars
  return _save(fig, os.path.join(out_dir, f"bars__{_suffix(mixture, axes)}.png"))


# ---------------------------------------------------------------- delta-m vs relatedness

def relatedness_sweeps(groups: Sequence[dict]) -> dict:
  """{(num_tasks, axes tuple): {strategy: [(r, mean, std, n), ...]}} over synthetic mixtures."""
  out: dict = {}
  for g in groups:
    m = _SYNTHETIC.match(g["mixture"])
    if not m or math.isnan(g["delta_m"]["mean"]):
      continue
    key = (int(m.group(2)), tuple(g["axes"].items()))
    out.setdefault(key, {}).setdefault(g["strategy"], []).append(
        (int(m.group(1)) / 100.0, g["delta_m"]["mean"], g["delta_m"]["std"], g["delta_m"]["n"]))
  for series in out.values():
    for points in series.values():
      points.sort()
  return out


def delta_m_vs_relatedness(groups: Sequence[dict], strategies: Sequence[str], out_dir) -> list[str]:
  """Delta-m (%) against task relatedness r, one line (±std over seeds) per strategy."""
  paths = []
  color = colors(strategies)
  for (num_tasks, axes), series in sorted(relatedness_sweeps(groups).items()):
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot(1, 1, 1)
    for s in strategies:
      if s not in series:
        continue
      r, mean, std, n = zip(*series[s])
      err = [0.0 if math.isnan(x) else 100 * x for x in std]
      ax.errorbar(r, [100 * x for x in mean], yerr=err, capsize=3, marker="o",
                  linestyle="--" if s == SINGLE else "-", color=color[s],
                  label=f"{label(s)}" + (" (reference)" if s == SINGLE else f" (n={max(n)})"))
    ax.set_xlabel("task relatedness r")
    ax.set_ylabel("Δm vs single-task (%)")
    ax.set_title(f"Δm vs relatedness: {_title(f'T={num_tasks}', dict(axes))}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    name = "__".join(["delta_m_vs_relatedness", f"t{num_tasks}", *(slug(f"{k.split('.')[-1]}={v}") for k, v in axes)])
    paths.append(_save(fig, os.path.join(out_dir, f"{name}.png")))
  return paths


# ------------------------------------------------------------------------ mixing weights

def flatten(tree, prefix: str = "") -> dict:
  """Nested dicts -> {'a/b/c': value}; flat 'a/b' keys pass through."""
  out = {}
  for k, v in tree.items():
    key = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(flatten(v, key))
    else:
      out[key] = v
  return out


def _block_labels(n: int, tasks: Sequence[str]) -> list[str]:
  names = list(short_names(tasks).values())
  if len(names) == n:
    return names
  if names and n % len(names) == 0:
    m = n // len(names)
    return [f"{names[i // m]}.{i % m}" for i in range(n)]
  return [str(i) for i in range(n)]


def _heatmap(ax, matrix: np.ndarray, xlabels, ylabels, title: str, sequential: bool = False, center: float = 0.0,
             spread: float | None = None):
  """Annotated heatmap: sequential from 0 (norms), or diverging around `center`: alpha around 0, a
  row-stochastic weight around uniform 1/T (else near-uniform rows come out all one dark colour).
  `spread`: the colour range (one for all panels of a figure, so layers compare); default this matrix's."""
  off = np.abs(matrix) if sequential else np.abs(matrix - center)
  spread = spread or float(np.nanmax(off)) or 1.0
  if sequential:
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=spread)
  else:
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=center - spread, vmax=center + spread)
  ax.set_xticks(range(matrix.shape[1]))
  ax.set_xticklabels(xlabels, rotation=90, fontsize=7)
  ax.set_yticks(range(matrix.shape[0]))
  ax.set_yticklabels(ylabels, fontsize=7)
  ax.set_title(title, fontsize=9)
  if matrix.size <= 64:
    for (i, j), v in np.ndenumerate(matrix):
      light = v > 0.5 * spread if sequential else off[i, j] <= 0.6 * spread
      ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="black" if light else "white")
  return image


def alpha_heatmaps(weights: Mapping, strategy: str, tasks: Sequence[str], title: str, path,
                   what: str = "alpha") -> str | None:
  """One heatmap per layer of `<strategy>/<what>/layer_k` (rows receive, columns send); what = 'alpha' or
  'attention' (AdapterFusion's measured attention)."""
  layers = sorted((int(m.group(3)), np.asarray(v, dtype=float)) for k, v in weights.items()
                  if (m := _ALPHA.match(k)) and m.group(1) == strategy and m.group(2) == what)
  layers = [(k, a) for k, a in layers if a.ndim == 2]
  if not layers:
    return None
  rows, cols = _grid(len(layers))
  size = max(3.2, 0.35 * layers[0][1].shape[0] + 1.8)
  fig = Figure(figsize=(size * cols + 0.8, size * rows))
  center = 1.0 / layers[0][1].shape[1] if strategy == "adapter_fusion" else 0.0  # fusion rows: softmax over T
  spread = max(float(np.nanmax(np.abs(a - center))) for _, a in layers) or 1.0  # one colour scale for all layers
  for i, (k, a) in enumerate(layers):
    ax = fig.add_subplot(rows, cols, i + 1)
    image = _heatmap(ax, a, _block_labels(a.shape[1], tasks), _block_labels(a.shape[0], tasks), f"layer {k}",
                     center=center, spread=spread)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  fig.suptitle(title, fontsize=10)
  return _save(fig, path)


def beta_bars(weights: Mapping, tasks: Sequence[str], title: str, path) -> str | None:
  """sluice/beta [T, K]: for each task, how much each layer feeds its head."""
  if "sluice/beta" not in weights:
    return None
  beta = np.asarray(weights["sluice/beta"], dtype=float)
  if beta.ndim != 2:
    return None
  names = _block_labels(beta.shape[0], tasks)
  width = 0.8 / beta.shape[1]
  fig = Figure(figsize=(max(5.0, 0.9 * beta.shape[0] * max(1, beta.shape[1]) * 0.5 + 2), 3.8))
  ax = fig.add_subplot(1, 1, 1)
  for k in range(beta.shape[1]):
    ax.bar(np.arange(beta.shape[0]) - 0.4 + width * (k + 0.5), beta[:, k], width, label=f"layer {k}")
  ax.set_xticks(np.arange(beta.shape[0]))
  ax.set_xticklabels(names, rotation=30 if len(names) > 6 else 0)
  ax.set_ylabel("beta")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=7)
  ax.grid(axis="y", alpha=0.3)
  return _save(fig, path)


def _softmax(x: np.ndarray) -> np.ndarray:
  z = np.exp(x - x.max(axis=-1, keepdims=True))
  return z / z.sum(axis=-1, keepdims=True)


def gate_usage(weights: Mapping) -> tuple[np.ndarray, str] | None:
  """[T, E] expert usage per task: measured gate probabilities when saved, else the softmax
  of the gate logits (bias = gates for a zero input)."""
  if "mmoe/gate_probabilities" in weights:
    return np.asarray(weights["mmoe/gate_probabilities"], float), "mean gate probability"
  for key in ("mmoe/gate_logits/bias", "mmoe/gate_logits"):
    if key in weights:
      return _softmax(np.asarray(weights[key], float)), f"softmax({key})"
  return None


def gate_bars(weights: Mapping, tasks: Sequence[str], title: str, path) -> str | None:
  """Stacked bars: each task's use of each expert (rows sum to 1)."""
  found = gate_usage(weights)
  if found is None or found[0].ndim != 2:
    return None
  usage, what = found
  names = _block_labels(usage.shape[0], tasks)
  norms = np.asarray(weights.get("mmoe/gate_logits/kernel_norm", []), float)
  panels = 2 if norms.ndim == 2 and norms.shape == usage.shape else 1
  width = max(5.0, 0.6 * usage.shape[0] + 2.5)
  fig = Figure(figsize=(width + (0.5 * usage.shape[1] + 3.0) * (panels - 1), 3.8))
  ax = fig.add_subplot(1, panels, 1)
  bottom = np.zeros(usage.shape[0])
  for e in range(usage.shape[1]):
    ax.bar(np.arange(usage.shape[0]), usage[:, e], 0.7, bottom=bottom, label=f"expert {e}")
    bottom += usage[:, e]
  ax.set_xticks(np.arange(usage.shape[0]))
  ax.set_xticklabels(names, rotation=30 if len(names) > 6 else 0)
  ax.set_ylabel(what)
  ax.set_title("expert usage per task", fontsize=9)
  ax.legend(fontsize=7, loc="upper right")
  if panels == 2:  # how strongly each task's gate depends on the input (0 = a fixed mixture)
    ax2 = fig.add_subplot(1, 2, 2)
    image = _heatmap(ax2, norms, [f"e{e}" for e in range(norms.shape[1])], names,
                     "gate kernel L2 norm (input dependence)", sequential=True)
    fig.colorbar(image, ax=ax2, fraction=0.046, pad=0.04)
  fig.suptitle(title, fontsize=10)
  return _save(fig, path)


def mixing_plots(cells: Sequence[dict], groups: Sequence[dict], out_dir) -> tuple[list[str], list[str]]:
  """Mixing-weight plots for the lowest-seed finished cell of every group that has
  mixing_weights.json; notes for mixing strategies that have none (plots skipped)."""
  paths, notes = [], []
  for g in groups:
    if g["kind"] != "mtl":
      continue
    members = sorted((c for c in cells if c["kind"] == "mtl" and c["strategy"] == g["strategy"]
                      and c["mixture"] == g["mixture"] and c["axes"] == g["axes"] and c["status"] == "done"),
                     key=lambda c: c["seed"])
    with_weights = [c for c in members if c["mixing_weights"]]
    where = _title(g["mixture"], g["axes"])
    if not with_weights:
      if g["strategy"] in MIXING_STRATEGIES and members:
        notes.append(f"{g['strategy']} on {where}: no mixing_weights.json in its run directories; "
                     "mixing-weight plots skipped.")
      continue
    cell = with_weights[0]
    weights = flatten(cell["mixing_weights"])
    tasks = sorted(cell["tasks"])
    stem = os.path.join(out_dir, f"mixing__{g['strategy']}__{_suffix(g['mixture'], g['axes'])}")
    made = [
        alpha_heatmaps(weights, "sluice", tasks, f"sluice alpha per layer: {where}, seed {cell['seed']}",
                       f"{stem}__sluice_alpha.png"),
        beta_bars(weights, tasks, f"sluice beta (layer mix per task): {where}, seed {cell['seed']}",
                  f"{stem}__sluice_beta.png"),
        alpha_heatmaps(weights, "cross_stitch", tasks, f"cross-stitch alpha per layer: {where}, seed {cell['seed']}",
                       f"{stem}__cross_stitch_alpha.png"),
        alpha_heatmaps(weights, "adapter_fusion", tasks, f"AdapterFusion softmax(prior) per layer: {where}, seed "
                       f"{cell['seed']}\n(row: reading task, column: adapter; white = uniform 1/T)",
                       f"{stem}__adapter_fusion_alpha.png"),
        alpha_heatmaps(weights, "adapter_fusion", tasks, f"AdapterFusion measured attention per layer: {where}, seed "
                       f"{cell['seed']}\n(mean over each task's validation examples; row: reading task, column: "
                       "adapter; white = uniform 1/T)", f"{stem}__adapter_fusion_attention.png", what="attention"),
        gate_bars(weights, tasks, f"MMoE gate usage per task: {where}, seed {cell['seed']}",
                  f"{stem}__mmoe_gates.png"),
    ]
    made = [p for p in made if p]
    if not made:
      notes.append(f"{g['strategy']} on {where}: mixing_weights.json has no alpha/beta/gate entries "
                   f"({', '.join(sorted(weights)) or 'empty'}); nothing plotted.")
    paths += made
  return paths, notes
