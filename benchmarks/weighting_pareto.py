"""A static-weight sweep on a 2-task synthetic mixture, drawn as a Pareto front, with every
weighting method's point on it; each method tested against the tuned static-weight baseline.

Why in-process: 20+ configurations x 6 seeds through the binary would spend most of the
time starting processes; here each configuration is the real Steps train step (hard
sharing, tiny model, task-grouped batches) on the synthetic relatedness benchmark's two
tasks (mtl_jax/data/synthetic.py, relatedness r). The same sweep through mtl-compare:
gin/experiments/weighting_pareto.gin.

What is reported (the protocol of docs/howto/compare.md): every configuration is scored on the
validation and the test split after the last step. The baseline is the *tuned* static weighting
(Kurin et al. 2022, Xin et al. 2022): the static weight with the best validation mean over seeds is
picked (never by test), and each method's test mean accuracy is compared with it paired over seeds
(same seed = same initialisation and batches), paired t-test, exact sign-flip test, Holm over all
methods (mtl_jax/compare/stats.py).

  python benchmarks/weighting_pareto.py            # ~10 minutes on 2 CPU cores (6 seeds)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_cpu_multi_thread_eigen=false"]).strip()

import gin  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from mtl_jax.scale import partitioning  # noqa: E402
from mtl_jax.step import steps as steps_lib
from mtl_jax import weighting
from mtl_jax.data import synthetic  # noqa: E402
from mtl_jax.models.encoder import EncoderConfig  # noqa: E402
from mtl_jax.models.multitask import build_model  # noqa: E402
from mtl_jax.compare import stats  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SPLITS = ("validation", "test")
LENGTH, BATCH = 24, 32


def data(relatedness: float):
  cfg = synthetic.SyntheticConfig(num_tasks=2, relatedness=relatedness, train_examples=2000, validation_examples=500,
                                  test_examples=500)
  def arrays(task, split):
    ex = synthetic.generate(cfg, task, split)
    ids = np.zeros((len(ex), LENGTH), np.int32)
    for i, e in enumerate(ex):
      ids[i, :len(e["token_ids"])] = np.asarray(e["token_ids"]) + 1  # 0 is padding
    return ids, np.asarray([e["label"] for e in ex], np.int32)
  return {s: [arrays(t, s) for t in range(2)] for s in ("train", "validation", "test")}, cfg.vocab_size + 1


def batch_of(ids, labels, task_id):
  b = steps_lib.dummy_batch(len(ids), LENGTH)
  b.update(input_ids=ids, input_mask=(ids > 0).astype(np.int32), label=labels, task_id=task_id)
  return b


def run_config(method: str, weights, seeds, sets, vocab: int, steps_n: int) -> dict:
  """{split: [[acc task 0, acc task 1] per seed]} for validation and test, after the last step;
  one compiled step per configuration; the seed picks
  the initial parameters and the batches (the step's own rng, used by rlw / pcgrad, is seed 0's)."""
  name, rep = ("mgda", True) if method == "mgda_ub" else (method, False)
  gin.clear_config()
  gin.bind_parameter("mtl_jax.weighting.method", name)
  gin.bind_parameter("mtl_jax.weighting.rep_grad", rep)
  if weights is not None:
    gin.bind_parameter("mtl_jax.weighting.static.weights", list(weights))
  cfg = EncoderConfig(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, max_len=LENGTH, dropout_rate=0.0,
                      vocab_size=vocab)
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = steps_lib.Steps(build_model(cfg, "hard", [2, 2]), optax.adam(3e-3), ["classification"] * 2, mesh,
                          partitioning.logical_axis_rules(), 0, BATCH, LENGTH, grouped=True)
  gin.clear_config()
  out, half = {split: [] for split in SPLITS}, BATCH // 2
  for seed in seeds:
    with jax.set_mesh(mesh):
      state = steps._init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    for _ in range(steps_n):  # task-grouped: half the rows from each task
      rows = [rng.integers(0, len(sets["train"][t][0]), half) for t in range(2)]
      ids = np.concatenate([sets["train"][t][0][r] for t, r in enumerate(rows)])
      labels = np.concatenate([sets["train"][t][1][r] for t, r in enumerate(rows)])
      state, _ = steps.run_train_step(state, batch_of(ids, labels, np.repeat(np.arange(2, dtype=np.int32), half)))
    for split in SPLITS:
      accs = []
      for t, (ids, labels) in enumerate(sets[split]):
        n = len(ids) - len(ids) % BATCH
        preds = [steps.run_predict(state.params, batch_of(ids[i:i + BATCH], labels[i:i + BATCH],
                                                          np.full(BATCH, t, np.int32)))["classification"]
                 for i in range(0, n, BATCH)]
        accs.append(float((np.concatenate(preds) == labels[:n]).mean()))
      out[split].append(accs)
  return out


def half_ci(values) -> np.ndarray:
  """Half-width of the 95% t interval over seeds, per task (for error bars)."""
  intervals = [stats.t_interval(column) for column in np.asarray(values, float).T]
  return np.array([(hi - lo) / 2 for lo, hi in intervals])


def plot(results: dict, path: pathlib.Path, relatedness: float, tuned: str, n_seeds: int):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7.5, 6))
  static = sorted((k for k in results if k.startswith("static")), key=lambda k: float(k.split("=")[1]))
  m = np.array([np.mean(results[k]["test"], 0) for k in static])
  e = np.array([half_ci(results[k]["test"]) for k in static])
  ax.errorbar(m[:, 0], m[:, 1], xerr=e[:, 0], yerr=e[:, 1], fmt="-o", color="k", label="static w (task 0 weight)")
  for k, (x, y) in zip(static, m):
    ax.annotate(k.split("=")[1] + (" (tuned)" if k == tuned else ""), (x, y), textcoords="offset points",
                xytext=(4, -10), fontsize=7)
  markers = "sD^v<>pP*XhH8d"
  for i, k in enumerate(k for k in results if not k.startswith("static")):
    mu, ci = np.mean(results[k]["test"], 0), half_ci(results[k]["test"])
    ax.errorbar(mu[0], mu[1], xerr=ci[0], yerr=ci[1], fmt=markers[i % len(markers)], label=k, alpha=0.8)
  ax.set_xlabel("task 0 test accuracy")
  ax.set_ylabel("task 1 test accuracy")
  ax.set_title(f"Static-weight front and weighting methods (synthetic, r={relatedness}, 2 tasks; "
               f"test mean, 95% CI, {n_seeds} seeds)", fontsize=9)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def report(results: dict) -> tuple[str, dict]:
  """The markdown table and the comparisons: tuned static picked on validation, methods vs it on test."""
  mean_acc = lambda k, split: np.mean(results[k][split], axis=1)  # per seed, mean over the two tasks
  static = [k for k in results if k.startswith("static")]
  tuned = max(static, key=lambda k: float(mean_acc(k, "validation").mean()))
  methods = [k for k in results if not k.startswith("static")]
  comps = [stats.paired_test(mean_acc(k, "test"), mean_acc(tuned, "test")) for k in methods]
  stats.adjust(comps)
  n = len(results[tuned]["test"])
  lines = [f"Baseline: the tuned static weighting, picked on validation mean accuracy over {n} seeds among "
           f"{', '.join(s.split('=')[1] for s in static)} (task-0 weight): **{tuned}** "
           f"(validation {mean_acc(tuned, 'validation').mean():.3f}).", "",
           "| configuration | validation mean acc | test mean acc [95% CI] | task 0 test | task 1 test | "
           "vs tuned static: diff [95% CI] | p (t) | p (sign flip) | p Holm | |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  def row(k, c=None):
    s = stats.summarize(mean_acc(k, "test"))
    t = np.mean(results[k]["test"], 0)
    cells = [k + (" (tuned)" if k == tuned else ""), f"{mean_acc(k, 'validation').mean():.3f}",
             f"{s['mean']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]", f"{t[0]:.3f}", f"{t[1]:.3f}"]
    if c is None:
      cells += ["–"] * 4 + [""]
    else:
      cells += [f"{c['diff']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]", stats.fmt_p(c["p"]),
                stats.fmt_p(c["p_perm"]), stats.fmt_p(c["p_adj"]), stats.arrow(c)]
    return "| " + " | ".join(cells) + " |"
  lines += [row(k) for k in sorted(static, key=lambda k: float(k.split("=")[1]))]
  order = sorted(range(len(methods)), key=lambda i: -comps[i]["diff"])
  lines += [row(methods[i], comps[i]) for i in order]
  lines += ["", stats.method_paragraph(n, comps[0]["m"] if comps else 0)]
  undetected = [c["detectable"] for c in comps if c.get("detectable")]  # 0: the same runs (equal = tuned)
  if undetected:
    lines.append(f"Power: with {n} seeds and these SDs of the paired differences, the non-significant comparisons "
                 f"could detect differences of {min(undetected):.4f}-{max(undetected):.4f} mean accuracy at 80% power "
                 f"(Holm level).")
  return "\n".join(lines) + "\n", {"tuned_static": tuned, "comparisons": dict(zip(methods, comps))}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--relatedness", type=float, default=0.3)
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--seeds", default="0,1,2,3,4,5")
  parser.add_argument("--static", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
                      help="task-0 weights of the sweep (the simplex grid the baseline is tuned on)")
  parser.add_argument("--methods", default="", help="default: every method but static, plus mgda_ub")
  parser.add_argument("--out", default=str(RESULTS), help="where weighting_pareto.{json,png,md} are written")
  parser.add_argument("--from_json", help="no training: the table and figure again from a weighting_pareto.json")
  args = parser.parse_args()
  if args.from_json:
    saved = json.loads(pathlib.Path(args.from_json).read_text())
    return write(saved["accuracy"], argparse.Namespace(**{**saved["args"], "out": args.out}), saved.get("wall_s"))
  sets, vocab = data(args.relatedness)
  methods = args.methods.split(",") if args.methods else [m for m in (*weighting.names(), "mgda_ub") if m != "static"]
  configs = [(f"static={w}", "static", (float(w), 1 - float(w))) for w in args.static.split(",")]
  configs += [(m, m, None) for m in methods]
  results, start = {}, time.time()
  for label, method, weights in configs:
    results[label] = run_config(method, weights, [int(s) for s in args.seeds.split(",")], sets, vocab, args.steps)
    v, t = (np.mean(results[label][split]) for split in SPLITS)
    print(f"{label:<14} validation {v:.3f}  test {t:.3f}  ({time.time() - start:.0f}s)", flush=True)
  write(results, args, time.time() - start)


def write(results: dict, args, wall_s) -> None:
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  table, comparisons = report(results)
  (out / "weighting_pareto.json").write_text(json.dumps(
      {"args": vars(args), "accuracy": results, **comparisons, "wall_s": wall_s}, indent=1, default=str))
  (out / "weighting_pareto.md").write_text(table)
  plot(results, out / "weighting_pareto.png", args.relatedness, comparisons["tuned_static"], len(args.seeds.split(",")))
  print(table)
  print(f"wrote {out / 'weighting_pareto.png'} (.json, .md)")


if __name__ == "__main__":
  main()
