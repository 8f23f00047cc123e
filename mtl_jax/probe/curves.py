"""Learning curves of light models on frozen features: training-set sizes x seeds, per task and featurizer.

For each (featurizer, task, model, size, seed): a seeded subset of `size` training examples
(the whole split for 'all'), features standardised with the subset's statistics, the model fitted
(logistic regression / ridge: the L2 strength chosen on the validation split from a sweep; MLP:
fixed settings) and scored on the test split (validation when there is none) with the task's own
seqio metrics, headline as in training. Writes probe_results.csv (one row per fit), probe_summary.csv
(mean ± std over seeds), report.md and plots/curves.png (one panel per task, featurizers side by side).
"""

from __future__ import annotations

import csv
import math
import pathlib
from typing import Sequence

import numpy as np

from mtl_jax import heads as heads_lib
from mtl_jax.input import task_info
from mtl_jax.compare import aggregate
from mtl_jax.probe import models, scoring

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # scikit-learn's C (inverse L2 strength, per example sum)
MODELS = ("logreg", "mlp")
SUMMARY_FIELDS = ("featurizer", "task", "model", "size", "metric", "mean", "std", "n", "mix_weights")


def score(task_name: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
  """The task's own metrics on (targets, predictions), as the evaluator scores them."""
  info = task_info.get(task_name)
  head = heads_lib.KINDS[info.kind]
  return scoring.score_pairs(task_name, [head.metric_pair(p, {"label": t, "score": t}, info.label_names)
                                  for t, p in zip(y_true, y_pred)])


def subset(n: int, size, seed: int) -> np.ndarray:
  if size == "all" or size >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def fit_and_score(task_name: str, model: str, train, valid, test, seed: int, scalar_mix: bool) -> dict:
  """One fit; returns {'valid', 'test' (headline), 'metric', 'l2', 'mix_weights'}."""
  info = task_info.get(task_name)
  from mtl_jax.probe import token_heads
  if info.kind in token_heads.KINDS:  # QA / multiple choice: a linear head on the token states
    return token_heads.fit_and_score(task_name, model, train, valid, test, seed, scalar_mix, C_GRID)
  x_train = train["x"] if scalar_mix else train["x"][:, -1]
  norm = models.standardizer(x_train)
  pick = (lambda d: norm(d["x"])) if scalar_mix else (lambda d: norm(d["x"][:, -1]))
  xt, xv, xs = norm(x_train), pick(valid), pick(test)
  classes = info.num_classes if info.kind == "classification" else None
  if model == "logreg":
    best = None
    for c in C_GRID:
      fitted = models.fit_linear(xt, train["y"], info.kind, 1.0 / (c * len(xt)), classes, scalar_mix)
      v = score(task_name, valid["y"], fitted.predict(xv))["headline"]
      if best is None or v > best[0]:
        best = (v, c, fitted)
    v, c, fitted = best
  elif model == "mlp":
    fitted, c = models.fit_mlp(xt, train["y"], info.kind, seed, num_classes=classes, scalar_mix=scalar_mix), None
    v = score(task_name, valid["y"], fitted.predict(xv))["headline"]
  else:
    raise ValueError(f"unknown probe model {model!r}; use one of {', '.join(MODELS)}")
  result = score(task_name, test["y"], fitted.predict(xs))
  return {"valid": v, "test": result["headline"], "metric": scoring.headline_name(result), "C": c,
          "mix_weights": fitted.mix_weights()}


def summarise(rows: Sequence[dict]) -> list[dict]:
  groups = {}
  for r in rows:
    groups.setdefault((r["featurizer"], r["task"], r["model"], r["size"]), []).append(r)
  out = []
  for (feat, task, model, size), rs in groups.items():
    mean, std, n = aggregate.mean_std(r["test"] for r in rs)
    mixes = [r["mix_weights"] for r in rs if r["mix_weights"]]
    mix = np.mean(np.array(mixes), 0).round(3).tolist() if mixes else None
    out.append({"featurizer": feat, "task": task, "model": model, "size": size, "metric": rs[0]["metric"],
                "mean": mean, "std": std, "n": n, "mix_weights": mix})
  return out


def _size_key(size) -> float:
  return math.inf if size == "all" else float(size)


def write_csv(path: pathlib.Path, rows: Sequence[dict], fields: Sequence[str]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
      writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def plot(summary: Sequence[dict], train_sizes: dict, path: pathlib.Path) -> str:
  """One panel per task: headline vs training-set size (log x), error bars = seed std."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib.figure import Figure
  tasks = sorted({r["task"] for r in summary})
  cols = min(3, len(tasks))
  rows_n = -(-len(tasks) // cols)
  fig = Figure(figsize=(4.2 * cols, 3.2 * rows_n))
  for i, task in enumerate(tasks):
    ax = fig.add_subplot(rows_n, cols, i + 1)
    lines = sorted({(r["featurizer"], r["model"]) for r in summary if r["task"] == task})
    for feat, model in lines:
      pts = sorted((r for r in summary if (r["task"], r["featurizer"], r["model"]) == (task, feat, model)),
                   key=lambda r: _size_key(r["size"]))
      xs = [train_sizes[task] if r["size"] == "all" else min(int(r["size"]), train_sizes[task]) for r in pts]
      ys = [r["mean"] for r in pts]
      es = [0.0 if math.isnan(r["std"]) else r["std"] for r in pts]
      ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"{feat} / {model}")
    ax.set_xscale("log")
    ax.set_title(task, fontsize=10)
    ax.set_xlabel("training examples")
    ax.set_ylabel(next((r["metric"] for r in summary if r["task"] == task), "headline"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  return str(path)


def markdown(summary: Sequence[dict], featurizers: dict, eval_split: dict, figure: str, out_dir) -> str:
  lines = ["# Frozen-featurizer probes", "", "Featurizers:"]
  lines += [f"- `{name}`: {describe}" for name, describe in featurizers.items()]
  lines += ["", "Light models on pooled features (last layer, or the scalar mix of all layers where marked); "
            "scores: the task's headline metric on " + ", ".join(f"{t}: {s}" for t, s in eval_split.items()) +
            ", mean ± std over seeds.", "",
            "| task | featurizer | model | size | metric | score | n | mix weights (emb, layer 1..K) |",
            "|---|---|---|---|---|---|---|---|"]
  for r in sorted(summary, key=lambda r: (r["task"], r["featurizer"], r["model"], _size_key(r["size"]))):
    std = "" if math.isnan(r["std"]) else f" ± {r['std']:.3f}"
    mix = "–" if not r["mix_weights"] else " ".join(f"{w:.2f}" for w in r["mix_weights"])
    lines.append(f"| {r['task']} | {r['featurizer']} | {r['model']} | {r['size']} | {r['metric']} | "
                 f"{r['mean']:.3f}{std} | {r['n']} | {mix} |")
  lines += ["", f"![learning curves]({pathlib.Path(figure).relative_to(out_dir)})", ""]
  return "\n".join(lines)
