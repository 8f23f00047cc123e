"""A static-weight sweep on a 2-task synthetic mixture, drawn as a Pareto front, with every
weighting method's point on it (mean +- std over seeds).

Why in-process: 20+ configurations x 3 seeds through the binary would spend most of the
time starting processes; here each configuration is the real Steps train step (hard
sharing, tiny model, task-grouped batches) on the synthetic relatedness benchmark's two
tasks (mtl_jax/data/synthetic.py, relatedness r), scored by validation accuracy per task.
The same sweep through mtl-compare: gin/experiments/weighting_pareto.gin.

  python benchmarks/weighting_pareto.py            # ~5 minutes on 2 CPU cores
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

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
LENGTH, BATCH = 24, 32


def data(relatedness: float):
  cfg = synthetic.SyntheticConfig(num_tasks=2, relatedness=relatedness, train_examples=2000, validation_examples=500)
  def arrays(task, split):
    ex = synthetic.generate(cfg, task, split)
    ids = np.zeros((len(ex), LENGTH), np.int32)
    for i, e in enumerate(ex):
      ids[i, :len(e["token_ids"])] = np.asarray(e["token_ids"]) + 1  # 0 is padding
    return ids, np.asarray([e["label"] for e in ex], np.int32)
  return {s: [arrays(t, s) for t in range(2)] for s in ("train", "validation")}, cfg.vocab_size + 1


def batch_of(ids, labels, task_id):
  b = steps_lib.dummy_batch(len(ids), LENGTH)
  b.update(input_ids=ids, input_mask=(ids > 0).astype(np.int32), label=labels, task_id=task_id)
  return b


def run_config(method: str, weights, seeds, sets, vocab: int, steps_n: int) -> list[list[float]]:
  """[[acc task 0, acc task 1] per seed]: one compiled step per configuration; the seed picks
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
  out, half = [], BATCH // 2
  for seed in seeds:
    with jax.set_mesh(mesh):
      state = steps._init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    for _ in range(steps_n):  # task-grouped: half the rows from each task
      rows = [rng.integers(0, len(sets["train"][t][0]), half) for t in range(2)]
      ids = np.concatenate([sets["train"][t][0][r] for t, r in enumerate(rows)])
      labels = np.concatenate([sets["train"][t][1][r] for t, r in enumerate(rows)])
      state, _ = steps.run_train_step(state, batch_of(ids, labels, np.repeat(np.arange(2, dtype=np.int32), half)))
    accs = []
    for t, (ids, labels) in enumerate(sets["validation"]):
      n = len(ids) - len(ids) % BATCH
      preds = [steps.run_predict(state.params, batch_of(ids[i:i + BATCH], labels[i:i + BATCH],
                                                        np.full(BATCH, t, np.int32)))["classification"]
               for i in range(0, n, BATCH)]
      accs.append(float((np.concatenate(preds) == labels[:n]).mean()))
    out.append(accs)
  return out


def plot(results: dict, path: pathlib.Path, relatedness: float):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7.5, 6))
  static = sorted((k for k in results if k.startswith("static")), key=lambda k: float(k.split("=")[1]))
  m = np.array([np.mean(results[k], 0) for k in static])
  s = np.array([np.std(results[k], 0) for k in static])
  ax.errorbar(m[:, 0], m[:, 1], xerr=s[:, 0], yerr=s[:, 1], fmt="-o", color="k", label="static w (task 0 weight)")
  for k, (x, y) in zip(static, m):
    ax.annotate(k.split("=")[1], (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
  markers = "sD^v<>pP*XhH8d"
  for i, k in enumerate(k for k in results if not k.startswith("static")):
    mu, sd = np.mean(results[k], 0), np.std(results[k], 0)
    ax.errorbar(mu[0], mu[1], xerr=sd[0], yerr=sd[1], fmt=markers[i % len(markers)], label=k, alpha=0.8)
  ax.set_xlabel("task 0 validation accuracy")
  ax.set_ylabel("task 1 validation accuracy")
  ax.set_title(f"Static-weight front and weighting methods (synthetic, r={relatedness}, 2 tasks; mean ± std, 3 seeds)",
               fontsize=9)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--relatedness", type=float, default=0.3)
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--static", default="0.1,0.25,0.5,0.75,0.9", help="task-0 weights of the sweep")
  parser.add_argument("--methods", default="", help="default: every method but static, plus mgda_ub")
  args = parser.parse_args()
  sets, vocab = data(args.relatedness)
  methods = args.methods.split(",") if args.methods else [m for m in (*weighting.names(), "mgda_ub") if m != "static"]
  configs = [(f"static={w}", "static", (float(w), 1 - float(w))) for w in args.static.split(",")]
  configs += [(m, m, None) for m in methods]
  results, start = {}, time.time()
  for label, method, weights in configs:
    results[label] = run_config(method, weights, [int(s) for s in args.seeds.split(",")], sets, vocab, args.steps)
    mu = np.mean(results[label], 0)
    print(f"{label:<14} task0 {mu[0]:.3f}  task1 {mu[1]:.3f}  mean {mu.mean():.3f}  ({time.time() - start:.0f}s)",
          flush=True)
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "weighting_pareto.json").write_text(json.dumps({"args": vars(args), "accuracy": results}, indent=1))
  plot(results, RESULTS / "weighting_pareto.png", args.relatedness)
  print(f"wrote {RESULTS / 'weighting_pareto.png'}")


if __name__ == "__main__":
  main()
