"""mtl-taskemb: task embeddings and affinity -> similarity matrices, source rankings scored against a
measured transfer matrix, and task groups under a budget of k models.

  python -m mtl_jax.taskemb --tasks=rotten_tomatoes,vader_tweets,bbc_topic,chatterbot_intent \\
      --methods=textemb,taskemb,affinity --trunk=minilm=all-MiniLM-L6-v2 \\
      --taskemb_runs='/tmp/mtl_transfer/X/runs/source__{task}__seed{seed}' --seeds=0,1 \\
      --affinity_run=/runs/affinity_seed0 --transfer_matrix=/tmp/mtl_transfer/X/transfer_matrix.json \\
      --regime=n200 --budget=2 --out_dir=/tmp/taskemb

textemb   mean final-layer token state over each task's training text (--trunk: NAME=CHECKPOINT or
          NAME=run:MODEL_DIR[:TASK], as mtl-probe; cached by the trunk's weights fingerprint)
taskemb   diagonal Fisher of a model fine-tuned on each task: the runs named by --taskemb_runs (a
          template with {task} and {seed}; e.g. mtl-transfer's stage-1 runs), or, without it, short
          runs trained here (--finetune_gin_file, --finetune_steps) under OUT_DIR/finetune/.
          Two embeddings: 'taskemb' (trunk parameters) and 'taskemb_act' (per-layer activations).
affinity  TAG Z[i -> j] read from runs trained with gin/taskemb/affinity.gin (--affinity_run, one per seed)
Writes OUT_DIR/{embeddings.json, <method>[_seed<s>].npz, similarity_<method>.csv, plots/similarity_<method>.png,
ranking.csv, ranking_per_target.json, report.md, groups_<method>.gin}. Baselines DataSize and Random
(--random_seeds of them) are ranked alongside. Exit status 0, or 2 on bad input (one line).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util  # noqa: F401  gin-config resource_reader uses it without importing it
import json
import os
import pathlib
import sys

import numpy as np

METHODS = ("textemb", "taskemb", "affinity")


def _csv(text: str) -> list[str]:
  return [x.strip() for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
  try:
    return [int(x) for x in _csv(text)]
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of ints") from None


def parse_args(argv):
  p = argparse.ArgumentParser(prog="mtl-taskemb", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--tasks", type=_csv, required=True, help="comma-separated registered tasks")
  p.add_argument("--methods", type=_csv, default=["textemb", "taskemb"], help=f"any of {','.join(METHODS)}")
  p.add_argument("--trunk", default="minilm=all-MiniLM-L6-v2", help="TextEmb trunk: NAME=CHECKPOINT | NAME=run:DIR")
  p.add_argument("--taskemb_runs", help="MODEL_DIR template with {task} (and {seed}) of runs fine-tuned per task")
  p.add_argument("--seeds", type=_ints, default=[0], help="seeds of the TaskEmb runs")
  p.add_argument("--finetune_gin_file", action="append", default=None,
                 help="gin files of the fine-tuning runs trained here when --taskemb_runs is not given")
  p.add_argument("--finetune_steps", type=int, default=100)
  p.add_argument("--finetune_binding", action="append", default=[], help="KEY=VALUE gin binding of those runs")
  p.add_argument("--fisher_params", default="trunk", help="trunk | all (with the embedder) | none")
  p.add_argument("--no_activations", action="store_true", help="skip the per-layer activation Fisher")
  p.add_argument("--labels", default="labels", help="labels (empirical Fisher) | sampled (model's labels)")
  p.add_argument("--max_examples", type=int, default=512, help="training examples per task for the Fisher")
  p.add_argument("--fisher_batch_size", type=int, default=8)
  p.add_argument("--affinity_run", action="append", default=[], help="a MODEL_DIR holding affinity.json (repeatable)")
  p.add_argument("--transfer_matrix", help="mtl-transfer's transfer_matrix.json to score the rankings against")
  p.add_argument("--regime", help="the matrix's data regime (default: its only one)")
  p.add_argument("--k", type=_ints, default=[1, 3], help="NDCG@k / Regret@k cut-offs")
  p.add_argument("--random_seeds", type=int, default=10)
  p.add_argument("--budget", type=int, default=2, help="models (task groups) to propose")
  p.add_argument("--groups_gin_file", action="append", default=None, help="gin files of the proposed groups' "
                 "runs (default: --finetune_gin_file, else gin/runs/quickstart_pretrained.gin)")
  p.add_argument("--max_length", type=int, default=64, help="tokens per text")
  p.add_argument("--task_module", action="append", default=None, help="module registering the tasks")
  p.add_argument("--cache_dir", default=None, help="TextEmb cache (default MTL_JAX_CACHE/probe_features)")
  p.add_argument("--out_dir", required=True)
  return p.parse_args(argv)


def _finetune(args, task: str, seed: int, out_dir: pathlib.Path) -> pathlib.Path:
  """A short mtl-train run on one task (in-process), reused if it already finished."""
  from mtl_jax import train
  model_dir = out_dir / "finetune" / f"{task}__seed{seed}"
  if (model_dir / "checkpoints" / str(args.finetune_steps)).is_dir():
    return model_dir
  files = args.finetune_gin_file or ["gin/runs/quickstart_pretrained.gin"]
  argv = ["--no_progress", *(f"--gin_file={f}" for f in files), f"--gin.MIXTURE_OR_TASK_NAME={task}",
          f"--gin.TRAIN_STEPS={args.finetune_steps}", f"--gin.trainer.train.seed={seed}",
          f"--gin.MODEL_DIR={model_dir}", *(f"--gin.{b}" for b in args.finetune_binding)]
  if train.main(argv) != 0:
    raise ValueError(f"fine-tuning {task!r} (seed {seed}) failed; see {model_dir}")
  return model_dir


def _fisher_cached(out_dir: pathlib.Path, run: pathlib.Path, task: str, args, seed: int) -> dict:
  """run_fisher, kept in OUT_DIR/fisher/ so a rerun (e.g. adding --methods=affinity) does not recompute it."""
  from mtl_jax.taskemb import fisher
  key = json.dumps([str(run), task, args.max_length, args.max_examples, args.fisher_params, args.no_activations,
                    args.labels, seed])
  path = out_dir / "fisher" / f"{task}__seed{seed}.npz"
  if path.is_file():
    with np.load(path, allow_pickle=False) as z:
      if str(z["key"]) == key:
        names = [str(n) for n in z["names"]]
        return {"params": {n: z[f"p{i}"] for i, n in enumerate(names)},
                "activations": z["activations"] if z["activations"].size else None,
                "examples": float(z["examples"]), "step": int(z["step"])}
  f = fisher.run_fisher(run, task, args.max_length, args.fisher_batch_size, args.max_examples, args.fisher_params,
                        not args.no_activations, args.labels, seed)
  names = sorted(f["params"])
  path.parent.mkdir(parents=True, exist_ok=True)
  acts = f["activations"] if f["activations"] is not None else np.zeros((0,), np.float32)
  np.savez(path, key=key, names=np.array(names), activations=acts, examples=f["examples"], step=f["step"],
           **{f"p{i}": f["params"][n] for i, n in enumerate(names)})
  return f


def _train_sizes(tasks) -> dict[str, int]:
  import seqio
  return {t: sum(1 for _ in seqio.get_mixture_or_task(t).source.get_dataset("train")) for t in tasks}


def _save(out_dir, index, method, seed, tasks, arrays: dict, describe: str, meta=None):
  name = method if seed is None else f"{method}_seed{seed}"
  np.savez(out_dir / f"{name}.npz", tasks=np.array(tasks), **arrays)
  index[name] = {"method": method, "seed": seed, "file": f"{name}.npz", "tasks": list(tasks),
                 "arrays": {k: list(v.shape) for k, v in arrays.items()}, "describe": describe, **(meta or {})}


def embed(args, tasks, out_dir, echo) -> tuple[dict, dict]:
  """{method: [per-seed [T, T] matrices]} (similarity, or affinity Z) and the embeddings index."""
  from mtl_jax.taskemb import affinity, similarity
  unknown = [m for m in args.methods if m not in METHODS]
  if unknown:
    raise ValueError(f"--methods: unknown {unknown}; use {', '.join(METHODS)}")
  matrices, index = {}, {}
  if "taskemb" in args.methods:
    from mtl_jax.taskemb import fisher
    for seed in args.seeds:
      vectors, acts = [], []
      for t in tasks:
        run = pathlib.Path(args.taskemb_runs.format(task=t, seed=seed)) if args.taskemb_runs \
            else _finetune(args, t, seed, out_dir)
        f = _fisher_cached(out_dir, run, t, args, seed)
        vectors.append(fisher.flat_vector(f["params"]))
        acts.append(f["activations"])
        echo(f"mtl-taskemb: taskemb {t} seed {seed}: {int(f['examples'])} examples, {vectors[-1].size:,} params, "
             f"run {run} (step {f['step']})")
      arrays = {}
      if args.fisher_params != "none":
        arrays["params"] = np.stack(vectors)
        matrices.setdefault("taskemb", []).append(similarity.cosine_matrix(arrays["params"]))
      if not args.no_activations:
        arrays["activations"] = np.stack(acts)
        matrices.setdefault("taskemb_act", []).append(similarity.cosine_matrix(arrays["activations"]))
      _save(out_dir, index, "taskemb", seed, tasks, arrays,
            f"diagonal Fisher ({args.labels}, params={args.fisher_params}) of runs fine-tuned per task")
  if "textemb" in args.methods:
    from mtl_jax.probe import featurize
    from mtl_jax.taskemb import textemb
    trunk = featurize.parse(args.trunk)
    cache = pathlib.Path(args.cache_dir).absolute() if args.cache_dir else None
    got = [textemb.task_textemb(trunk, t, args.max_length, cache=cache) for t in tasks]
    emb = np.stack([g["mean"] for g in got])  # [T, K+1, D]
    _save(out_dir, index, "textemb", None, tasks, {"layers": emb, "textemb": emb[:, -1]},
          f"mean token state of {trunk.describe}", {"tokens": [g["tokens"] for g in got]})
    matrices["textemb"] = [similarity.cosine_matrix(emb[:, -1])]
    echo(f"mtl-taskemb: textemb {emb.shape} from {trunk.describe}")
  if "affinity" in args.methods:
    if not args.affinity_run:
      raise ValueError("--methods includes affinity but no --affinity_run MODEL_DIR was given; train one with "
                       "--gin_file=gin/taskemb/affinity.gin")
    for seed, run in enumerate(args.affinity_run):
      names, z = affinity.read(run)
      missing = [t for t in tasks if t not in names]
      if missing:
        raise ValueError(f"affinity run {run!r} has no task(s) {missing} (it has {names})")
      idx = [names.index(t) for t in tasks]
      z = z[np.ix_(idx, idx)]
      if np.isnan(z).any():
        raise ValueError(f"affinity run {run!r} never measured some pairs of {tasks}; measure more often")
      matrices.setdefault("affinity", []).append(z)
      _save(out_dir, index, "affinity", seed, tasks, {"affinity": z}, f"TAG Z[i -> j] of {run}")
  return matrices, index


def run(args, echo=print) -> dict:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  import gin
  gin.clear_config()
  for module in args.task_module or ["tasks.offline"]:
    importlib.import_module(module)
  from mtl_jax.input import task_info
  from mtl_jax.taskemb import groups as groups_lib, ranking, report, similarity
  tasks = list(dict.fromkeys(args.tasks))
  if len(tasks) < 2:
    raise ValueError(f"--tasks needs at least 2 tasks to compare, got {tasks}")
  for t in tasks:
    task_info.get(t)
  out_dir = pathlib.Path(args.out_dir).absolute()
  (out_dir / "plots").mkdir(parents=True, exist_ok=True)
  matrices, index = embed(args, tasks, out_dir, echo)
  (out_dir / "embeddings.json").write_text(json.dumps(index, indent=1))
  figures, mean_of = [], {}
  for method, mats in matrices.items():
    mean = np.mean(mats, axis=0)
    mean_of[method] = mean
    similarity.write_csv(out_dir / f"similarity_{method}.csv", tasks, mean)
    label = "affinity Z[row -> column]" if method == "affinity" else "cosine similarity"
    figures.append(similarity.heatmap(out_dir / "plots" / f"similarity_{method}.png", tasks, mean,
                                      f"{method} ({len(mats)} seed{'s' if len(mats) > 1 else ''})", label))
  rows, notes, per_target = [], [f"Tasks: {', '.join(tasks)}."], {}
  if args.transfer_matrix:
    record = json.loads(pathlib.Path(args.transfer_matrix).read_text())
    regimes = sorted({r["regime"] for r in record["matrix"]})
    regime = args.regime or (regimes[0] if len(regimes) == 1 else None)
    if regime is None:
      raise ValueError(f"the transfer matrix has regimes {regimes}: pick one with --regime")
    truth = ranking.truth_from_transfer(record, regime)
    truth = {t: {s: v for s, v in src.items() if s in tasks} for t, src in truth.items() if t in tasks}
    sources_of = {t: list(src) for t, src in truth.items() if len(src) >= 2}
    truth = {t: truth[t] for t in sources_of}
    if not truth:
      raise ValueError(f"the transfer matrix has no target among {tasks} with >= 2 of them as sources")
    scores = {}
    for method, mats in matrices.items():
      transpose = method == "affinity"  # Z[source, target]
      scores[method] = [ranking.score(ranking.from_matrix(tasks, m, sources_of, transpose), truth, args.k)
                        for m in mats]
    scores["datasize"] = [ranking.score(ranking.data_size(_train_sizes(tasks), sources_of), truth, args.k)]
    scores["random"] = [ranking.score(ranking.random_scores(sources_of, s), truth, args.k)
                        for s in range(args.random_seeds)]
    rows = report.summarise(scores)
    report.write_csv(out_dir / "ranking.csv", rows)
    per_target = {t: {"truth": truth[t], "best": max(truth[t], key=truth[t].get),
                      **{m: ranking.ranking(ranking.from_matrix(tasks, mean_of[m], {t: sources_of[t]},
                                                                 m == "affinity")[t]) for m in mean_of}}
                  for t in truth}
    (out_dir / "ranking_per_target.json").write_text(json.dumps(per_target, indent=1))
    truth_seeds = sorted({c["seed"] for c in record.get("cells", []) if c.get("regime") == regime})
    over = f"{len(truth_seeds)} seed{'s' if len(truth_seeds) > 1 else ''} {truth_seeds}" if truth_seeds else "seeds"
    notes.append(f"Truth: {args.transfer_matrix} regime {regime!r}, {len(truth)} targets, "
                 f"{sum(len(v) for v in sources_of.values())} (target, source) pairs; score = the target's "
                 f"headline metric after fine-tuning from the source (mean over the matrix's {over}).")
    notes.append("Seeds: TaskEmb over its fine-tuning runs' seeds, affinity over its runs, Random over "
                 f"{args.random_seeds} draws; TextEmb and DataSize are deterministic.")
    for r in rows:
      echo(f"mtl-taskemb: {r['method']:12s} " + " ".join(f"{k}={v[0]:.3f}±{v[1]:.3f}" for k, v in r.items()
                                                       if k not in ("method", "n")))
  proposals = {}
  files = args.groups_gin_file or args.finetune_gin_file or ["gin/runs/quickstart_pretrained.gin"]
  budget = min(args.budget, len(tasks))
  for method, mean in mean_of.items():
    a = mean if method == "affinity" else groups_lib.centred(mean)
    chosen, total = groups_lib.select(a, budget)
    named = [[tasks[i] for i in g] for g in chosen]
    path = groups_lib.experiment_gin(out_dir / f"groups_{method}.gin", f"taskemb_groups_{method}", named, files,
                                     {"TRAIN_STEPS": args.finetune_steps}, args.seeds, f"{method} ({out_dir})")
    proposals[method] = " | ".join("+".join(g) for g in named) + f" (score {total:.3f}; {path.name})"
    echo(f"mtl-taskemb: groups from {method}: {proposals[method]}")
  (out_dir / "report.md").write_text(report.markdown("Task embeddings and source ranking", notes, rows, figures,
                                                     proposals, out_dir))
  echo(f"mtl-taskemb: wrote {out_dir / 'report.md'}, embeddings.json, {len(figures)} similarity heatmaps")
  return {"matrices": matrices, "rows": rows, "groups": proposals, "per_target": per_target}


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from mtl_jax.train import report_errors
  return report_errors("mtl-taskemb", lambda: run(args))
