"""mtl-taskemb: task embeddings and affinity -> similarity matrices, source rankings scored against a
measured transfer matrix, and task groups under a budget of k models.

  python -m mtl_jax.taskemb --tasks=rotten_tomatoes,vader_tweets,bbc_topic,chatterbot_intent \\
      --methods=textemb,taskemb,affinity --trunk=minilm=all-MiniLM-L6-v2 \\
      --taskemb_runs='/tmp/mtl_transfer/X/runs/source__{task}__seed{seed}' --seeds=0,1 \\
      --affinity_run=/runs/affinity_seed0 --transfer_matrix=/tmp/mtl_transfer/X/transfer_matrix.json \\
      --regime=n200 --budget=2 --out_dir=/tmp/taskemb

textemb   each text's mean final-layer token state, averaged over the task's training texts (Vu et al.;
          --textemb_pooling=token: one mean over all tokens) (--trunk: NAME=CHECKPOINT or
          NAME=run:MODEL_DIR[:TASK], as mtl-probe; cached by the trunk's weights fingerprint);
          'textemb_layers': every layer's mean compared on its own, fused by --combine
taskemb   diagonal Fisher of a model fine-tuned on each task (the whole training split unless --max_examples;
          --fisher_statistic sequence (the authors') | batch | token): the runs named by --taskemb_runs (a
          template with {task} and {seed}; e.g. mtl-transfer's stage-1 runs), or, without it, short
          runs trained here (--finetune_gin_file, --finetune_steps) under OUT_DIR/finetune/.
          'taskemb': every component (trunk tensor, layer output, attention output, pooled vector,
          classifier) compared on its own and the rankings fused by --combine (rrf | mean | a component);
          'taskemb_concat' / 'taskemb_act': the former single vectors (all parameters / all layer outputs).
          Targets embedded from their own regime: --taskemb_target_runs (e.g. mtl-transfer's 'none' cells)
          and --target_regime=N (the N-example subset those runs trained on); a target that is also a
          candidate source of other targets is embedded twice, as Vu et al.: its row from its regime, its
          column from its full-data source run (matrix[target, source]; *_as_source arrays in the npz).
affinity  TAG Z[i -> j] read from runs trained with gin/taskemb/affinity.gin (--affinity_run, one per seed)
oracle    a known [T, T] relation (--oracle=CSV, e.g. the synthetic catalogue's planted overlap)
Writes OUT_DIR/{embeddings.json, <method>[_seed<s>].npz, similarity_<method>.csv, plots/similarity_<method>.png,
ranking.csv, ranking_ci.json, ranking_per_target.json, report.md, groups_<method>.gin}. Baselines DataSize
and Random (--random_seeds of them) are ranked alongside; report.md has bootstrap CIs over targets and
paired tests against DataSize and Random (ranking_stats.py). --select_k K --target T writes the closed-loop
experiment select_vs_all__T__kK.gin (select.py). Exit status 0, or 2 on bad input (one line).
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

METHODS = ("textemb", "taskemb", "affinity", "oracle")
MAX_GROUP_TASKS = 12  # groups.select scores all 2^T subsets


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
  p.add_argument("--max_examples", type=int, default=None, help="cap on training examples per task for the Fisher "
                 "(default: the whole training split, as the paper)")
  p.add_argument("--fisher_statistic", default="sequence", help="sequence (the authors': gradient summed over "
                 "a text's tokens, squared) | batch (their code at --fisher_batch_size) | token (per-token squares)")
  p.add_argument("--combine", default="rrf", help="how TaskEmb components make one ranking: rrf | mean | a "
                 "component name (e.g. pooled, layer_1)")
  p.add_argument("--per_component", action="store_true", help="also rank by every activation component alone")
  p.add_argument("--textemb_pooling", default="example", help="example (each text's mean first, the paper) | token")
  p.add_argument("--taskemb_target_runs", help="MODEL_DIR template with {task} and {seed} of the runs that "
                 "embed the transfer matrix's targets (e.g. mtl-transfer's "
                 "target__none__to__{task}__REGIME__seed{seed})")
  p.add_argument("--target_regime", type=int, default=None, help="embed targets from their N-example subset")
  p.add_argument("--oracle", help="CSV of a known task x task relation (similarity CSV format): method 'oracle'")
  p.add_argument("--select_k", type=int, default=None, help="write the closed-loop experiment of the top-K sources")
  p.add_argument("--target", type=_csv, default=[], help="target task(s) of --select_k")
  p.add_argument("--candidates", type=_csv, default=[], help="candidate sources of --select_k (default: the "
                 "transfer matrix's sources of the target, else every other task)")
  p.add_argument("--select_method", default=None, help="method whose ranking --select_k uses (default: taskemb, "
                 "else the first computed)")
  p.add_argument("--select_seeds", type=_ints, default=[0, 1, 2], help="seeds of the closed-loop experiment")
  p.add_argument("--fisher_batch_size", type=int, default=8)
  p.add_argument("--affinity_run", action="append", default=[], help="a MODEL_DIR holding affinity.json (repeatable)")
  p.add_argument("--transfer_matrix", help="mtl-transfer's transfer_matrix.json to score the rankings against")
  p.add_argument("--regime", help="the matrix's data regime (default: its only one)")
  p.add_argument("--k", type=_ints, default=None, help="NDCG@k / Regret@k cut-offs (default 1,3, those that "
                 "fit every target's candidates); an explicit k above a target's candidates is an error")
  p.add_argument("--random_seeds", type=int, default=10)
  p.add_argument("--budget", type=int, default=2, help="models (task groups) to propose")
  p.add_argument("--groups_gin_file", action="append", default=None, help="gin files of the proposed groups' "
                 "runs (default: --finetune_gin_file, else gin/runs/minilm_finetune.gin)")
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
  files = args.finetune_gin_file or ["gin/runs/minilm_finetune.gin"]
  argv = ["--no_progress", *(f"--gin_file={f}" for f in files), f"--gin.MIXTURE_OR_TASK_NAME={task}",
          f"--gin.TRAIN_STEPS={args.finetune_steps}", f"--gin.trainer.train.seed={seed}",
          f"--gin.MODEL_DIR={model_dir}", *(f"--gin.{b}" for b in args.finetune_binding)]
  if train.main(argv) != 0:
    raise ValueError(f"fine-tuning {task!r} (seed {seed}) failed; see {model_dir}")
  return model_dir


def _fisher_cached(out_dir: pathlib.Path, run: pathlib.Path, task: str, args, seed: int,
                   limit: int | None = None, target: bool = False) -> dict:
  """run_fisher, kept in OUT_DIR/fisher/ so a rerun (e.g. adding --methods=affinity) does not recompute it."""
  from mtl_jax.taskemb import fisher
  key = json.dumps([str(run), task, args.max_length, args.max_examples, args.fisher_params, args.no_activations,
                    args.labels, seed, args.fisher_statistic, limit, args.fisher_batch_size])
  path = out_dir / "fisher" / f"{task}__seed{seed}{'__as_target' if target else ''}.npz"
  arrays = ("activations", "attention", "pooled")
  if path.is_file():
    with np.load(path, allow_pickle=False) as z:
      if str(z["key"]) == key:
        names, heads = [str(n) for n in z["names"]], [str(n) for n in z["heads"]]
        return {"params": {n: z[f"p{i}"] for i, n in enumerate(names)},
                "classifier": {n: z[f"h{i}"] for i, n in enumerate(heads)},
                **{a: z[a] if z[a].size else None for a in arrays},
                "examples": float(z["examples"]), "step": int(z["step"])}
  f = fisher.run_fisher(run, task, args.max_length, args.fisher_batch_size, args.max_examples, args.fisher_params,
                        not args.no_activations, args.labels, seed, statistic=args.fisher_statistic,
                        example_limit=limit, subset_seed=seed)
  names, heads = sorted(f["params"]), sorted(f["classifier"])
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(path, key=key, names=np.array(names), heads=np.array(heads), examples=f["examples"], step=f["step"],
           **{a: f[a] if f[a] is not None else np.zeros((0,), np.float32) for a in arrays},
           **{f"p{i}": f["params"][n] for i, n in enumerate(names)},
           **{f"h{i}": f["classifier"][n] for i, n in enumerate(heads)})
  return f


def _train_sizes(tasks) -> dict[str, int]:
  import seqio
  return {t: sum(1 for _ in seqio.get_mixture_or_task(t).source.get_dataset("train")) for t in tasks}


def _save(out_dir, index, method, seed, tasks, arrays: dict, describe: str, meta=None):
  name = method if seed is None else f"{method}_seed{seed}"
  np.savez(out_dir / f"{name}.npz", tasks=np.array(tasks), **arrays)
  index[name] = {"method": method, "seed": seed, "file": f"{name}.npz", "tasks": list(tasks),
                 "arrays": {k: list(v.shape) for k, v in arrays.items()}, "describe": describe, **(meta or {})}


def _matrix_predictor(tasks, m, transpose=False):
  from mtl_jax.taskemb import ranking
  return lambda sources_of: ranking.from_matrix(tasks, m, sources_of, transpose)


def _component_predictor(tasks, per_component, how):
  from mtl_jax.taskemb import components
  return lambda sources_of: components.predicted(per_component, tasks, sources_of, how)


def _add(store, method, matrix, predictor):
  store.setdefault(method, []).append((matrix, predictor))


def embed(args, tasks, out_dir, echo, targets=(), sources=None) -> tuple[dict, dict]:
  """({method: [per-seed (T x T matrix for heatmaps and groups, predictor(sources_of) -> predicted)]},
  the embeddings index). Tasks in `targets` are embedded from --taskemb_target_runs / --target_regime; those also
  in `sources` (candidate sources of another target; None: every task) a second time, as a source."""
  from mtl_jax.taskemb import affinity, components, similarity
  unknown = [m for m in args.methods if m not in METHODS]
  if unknown:
    raise ValueError(f"--methods: unknown {unknown}; use {', '.join(METHODS)}")
  if args.target_regime is not None and args.target_regime < 1:
    raise ValueError(f"--target_regime={args.target_regime}: use an int >= 1 examples")
  methods, index = {}, {}
  as_target = lambda t: t in targets and (args.taskemb_target_runs or args.target_regime)
  # A task that is a target is embedded twice, as Vu et al. do: from its own limited regime (its row) and, as
  # a candidate source for the other targets, from its full-data source run (its column); matrix[target, source].
  both = lambda t: as_target(t) and (sources is None or t in sources)
  twice = any(both(t) for t in tasks)
  if "taskemb" in args.methods:
    from mtl_jax.taskemb import fisher

    def fisher_of(t, seed, target):
      template = args.taskemb_target_runs if target and args.taskemb_target_runs else args.taskemb_runs
      run = pathlib.Path(template.format(task=t, seed=seed)) if template else _finetune(args, t, seed, out_dir)
      f = _fisher_cached(out_dir, run, t, args, seed, args.target_regime if target else None, target)
      echo(f"mtl-taskemb: taskemb {t} seed {seed} as a {'target' if target else 'source'}: {int(f['examples'])} "
           f"examples, {fisher.flat_vector(f['params']).size:,} params, run {run} (step {f['step']})")
      return f

    for seed in args.seeds:
      rows = [fisher_of(t, seed, bool(as_target(t))) for t in tasks]
      cols = [fisher_of(t, seed, False) if both(t) else f for t, f in zip(tasks, rows)] if twice else rows
      vector = lambda fs: np.stack([fisher.flat_vector(f["params"]) for f in fs])
      per_component, skipped = components.cosines([components.of_fisher(f) for f in rows],
                                                  [components.of_fisher(f) for f in cols] if twice else None)
      if skipped:
        echo(f"mtl-taskemb: taskemb seed {seed}: {len(skipped)} component(s) not comparable by cosine (shape differs "
             f"or all zero for a task), left out: {', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''}")
      mean = np.mean(list(per_component.values()), axis=0) if per_component else np.eye(len(tasks))
      _add(methods, "taskemb", mean, _component_predictor(tasks, per_component, args.combine))
      arrays = {"component_cosines": np.stack(list(per_component.values())) if per_component
                else np.zeros((0, len(tasks), len(tasks)))}
      if args.fisher_params != "none":
        arrays["params"] = vector(rows)
        if twice:
          arrays["params_as_source"] = vector(cols)
        m = similarity.cosine_matrix(arrays["params"], arrays.get("params_as_source"))
        _add(methods, "taskemb_concat", m, _matrix_predictor(tasks, m))
      if not args.no_activations:
        arrays["activations"] = np.stack([f["activations"] for f in rows])
        if twice:
          arrays["activations_as_source"] = np.stack([f["activations"] for f in cols])
        m = similarity.cosine_matrix(arrays["activations"], arrays.get("activations_as_source"))
        _add(methods, "taskemb_act", m, _matrix_predictor(tasks, m))
        if args.per_component:
          for name, cm in per_component.items():
            if not name.startswith(("param:", "classifier:")):
              _add(methods, f"taskemb:{name}", cm, _matrix_predictor(tasks, cm))
      _save(out_dir, index, "taskemb", seed, tasks, arrays,
            f"diagonal Fisher ({args.labels}, statistic={args.fisher_statistic}, params={args.fisher_params}) of runs "
            f"fine-tuned per task" + ("; rows: targets from their regime, *_as_source: every task as a source"
                                      if twice else ""),
            {"components": list(per_component), "skipped": skipped, "combine": args.combine})
  if "textemb" in args.methods:
    from mtl_jax.probe import featurize
    from mtl_jax.taskemb import textemb
    trunk = featurize.parse(args.trunk)
    cache = pathlib.Path(args.cache_dir).absolute() if args.cache_dir else None
    of = lambda t, target: textemb.task_textemb(trunk, t, args.max_length, cache=cache, pooling=args.textemb_pooling,
                                                regime=(args.target_regime, args.seeds[0]) if target else None)
    got = [of(t, bool(as_target(t) and args.target_regime)) for t in tasks]
    emb = np.stack([g["mean"] for g in got])  # [T, K+1, D]
    cols = (np.stack([of(t, False)["mean"] if both(t) and args.target_regime else g["mean"]
                      for t, g in zip(tasks, got)]) if twice else emb)
    arrays = {"layers": emb, "textemb": emb[:, -1], **({"layers_as_source": cols} if twice else {})}
    _save(out_dir, index, "textemb", None, tasks, arrays,
          f"mean token state of {trunk.describe} (pooling {args.textemb_pooling})",
          {"tokens": [g["tokens"] for g in got]})
    m = similarity.cosine_matrix(emb[:, -1], cols[:, -1])
    _add(methods, "textemb", m, _matrix_predictor(tasks, m))
    per_layer, _ = components.cosines([components.of_layers(e) for e in emb],
                                      [components.of_layers(e) for e in cols] if twice else None)
    if per_layer:
      _add(methods, "textemb_layers", np.mean(list(per_layer.values()), axis=0),
           _component_predictor(tasks, per_layer, args.combine if args.combine in ("rrf", "mean") else "rrf"))
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
      _add(methods, "affinity", z, _matrix_predictor(tasks, z, transpose=True))  # Z[source, target]
      _save(out_dir, index, "affinity", seed, tasks, {"affinity": z}, f"TAG Z[i -> j] of {run}")
  if "oracle" in args.methods:
    if not args.oracle:
      raise ValueError("--methods includes oracle but no --oracle=CSV was given (a task x task matrix, e.g. "
                       "python -m mtl_jax.taskemb.synthetic_study --write_oracle=oracle.csv)")
    names, m = similarity.read_csv(pathlib.Path(args.oracle))
    missing = [t for t in tasks if t not in names]
    if missing:
      raise ValueError(f"--oracle {args.oracle!r} has no row for task(s) {missing}; it has {names}")
    idx = [names.index(t) for t in tasks]
    m = m[np.ix_(idx, idx)]
    _add(methods, "oracle", m, _matrix_predictor(tasks, m))
    _save(out_dir, index, "oracle", None, tasks, {"oracle": m}, f"known relation from {args.oracle}")
  return methods, index


def run(args, echo=print) -> dict:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  import gin
  gin.clear_config()
  for module in args.task_module or ["tasks.offline"]:
    importlib.import_module(module)
  from mtl_jax.input import task_info
  from mtl_jax.taskemb import groups as groups_lib, ranking, ranking_stats, report, similarity
  tasks = list(dict.fromkeys(args.tasks))
  if len(tasks) < 2:
    raise ValueError(f"--tasks needs at least 2 tasks to compare, got {tasks}")
  for t in tasks:
    task_info.get(t)
  if (args.select_k is None) != (not args.target):
    raise ValueError("--select_k and --target go together: e.g. --select_k=3 --target=syncat_f0_m1")
  for t in args.target:
    if t not in tasks:
      raise ValueError(f"--target {t!r} is not among --tasks {tasks}; add it")
  out_dir = pathlib.Path(args.out_dir).absolute()
  from mtl_jax.taskemb import select, truth as truth_lib
  truth, regime, ties, record = truth_lib.read(args, tasks) if args.transfer_matrix else ({}, None, {}, {})
  args.k = args.k or [1, 3]
  (out_dir / "plots").mkdir(parents=True, exist_ok=True)
  methods, index = embed(args, tasks, out_dir, echo, targets=list(truth) or args.target,
                         sources={s for src in truth.values() for s in src} if truth else None)
  (out_dir / "embeddings.json").write_text(json.dumps(index, indent=1))
  figures, mean_of = [], {}
  for method, per_seed in methods.items():
    mats = [m for m, _ in per_seed]
    mean = np.mean(mats, axis=0)
    mean_of[method] = mean
    if ":" in method:
      continue  # single components: ranked, not drawn
    similarity.write_csv(out_dir / f"similarity_{method}.csv", tasks, mean)
    label = "affinity Z[row -> column]" if method == "affinity" else "cosine similarity"
    figures.append(similarity.heatmap(out_dir / "plots" / f"similarity_{method}.png", tasks, mean,
                                      f"{method} ({len(mats)} seed{'s' if len(mats) > 1 else ''})", label))
  rows, notes, per_target, sections = [], [f"Tasks: {', '.join(tasks)}."], {}, []
  if truth:
    sources_of = {t: list(src) for t, src in truth.items()}
    per_method = {m: [ranking.per_target(pred(sources_of), truth, args.k) for _, pred in per_seed]
                  for m, per_seed in methods.items()}
    per_method["datasize"] = [ranking.per_target(ranking.data_size(_train_sizes(tasks), sources_of), truth, args.k)]
    per_method["random"] = [ranking.per_target(ranking.random_scores(sources_of, s), truth, args.k)
                            for s in range(args.random_seeds)]
    scores = {m: [{k: float(np.mean([row[k] for row in seed.values()])) for k in next(iter(seed.values()))}
                  for seed in seeds] for m, seeds in per_method.items()}
    rows = report.summarise(scores)
    report.write_csv(out_dir / "ranking.csv", rows)
    result = ranking_stats.summary(per_method)
    (out_dir / "ranking_ci.json").write_text(json.dumps(
        {"rows": result["rows"], "comparisons": result["comparisons"], "targets": result["targets"]}, indent=1,
        default=float))
    expected = {k: float(np.mean([ranking.expected_random(truth[t], args.k)[k] for t in truth]))
                for k in next(iter(scores["random"]))}
    sections.append("## Ranking scores with 95% CIs and paired tests\n\n" + ranking_stats.markdown(result))
    sections.append("Random's closed-form expectation on these targets: " +
                    ", ".join(f"{k} {v:.3f}" for k, v in expected.items()) + ".")
    tied = sorted(t for t, v in ties.items() if v["tie"])
    unknown = sorted(t for t, v in ties.items() if v["tie"] is None)
    sections.append(f"Ties in the truth (best and second source within 2 standard errors over seeds): "
                    f"{len(tied)} of {len(ties)} targets" + (f" ({', '.join(tied)})" if tied else "") +
                    (f"; not decidable with one seed: {len(unknown)}" if unknown else "") + ".")
    per_target = {t: {"truth": truth[t], "best": max(truth[t], key=truth[t].get), "tie": ties.get(t),
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
                 f"{args.random_seeds} draws; TextEmb, oracle and DataSize are deterministic. TaskEmb: Fisher "
                 "statistic "
                 f"{args.fisher_statistic!r}, components fused by {args.combine!r}; ndcg_vu is Vu et al.'s NDCG "
                 "(2^rel - 1, full list), rank_of_best averaged is their rho.")
    for r in rows:
      echo(f"mtl-taskemb: {r['method']:12s} " + " ".join(f"{k}={v[0]:.3f}±{v[1]:.3f}" for k, v in r.items()
                                                       if k not in ("method", "n")))
  proposals = {}
  files = args.groups_gin_file or args.finetune_gin_file or ["gin/runs/minilm_finetune.gin"]
  budget = min(args.budget, len(tasks))
  if len(tasks) > MAX_GROUP_TASKS and args.budget:
    echo(f"mtl-taskemb: {len(tasks)} tasks: no task groups proposed (every subset of more than {MAX_GROUP_TASKS} "
         "tasks is too many to score; pass fewer --tasks for groups)")
  for method, mean in mean_of.items():
    if ":" in method or len(tasks) > MAX_GROUP_TASKS or not args.budget:
      continue
    a = mean if method == "affinity" else groups_lib.centred(mean)
    chosen, total = groups_lib.select(a, budget)
    named = [[tasks[i] for i in g] for g in chosen]
    path = groups_lib.experiment_gin(out_dir / f"groups_{method}.gin", f"taskemb_groups_{method}", named, files,
                                     {"TRAIN_STEPS": args.finetune_steps}, args.seeds, f"{method} ({out_dir})")
    proposals[method] = " | ".join("+".join(g) for g in named) + f" (score {total:.3f}; {path.name})"
    echo(f"mtl-taskemb: groups from {method}: {proposals[method]}")
  selections = select.write(args, tasks, truth, methods, files, out_dir, echo) if args.select_k is not None else {}
  (out_dir / "report.md").write_text(report.markdown("Task embeddings and source ranking", notes, rows, figures,
                                                     proposals, out_dir, sections))
  echo(f"mtl-taskemb: wrote {out_dir / 'report.md'}, embeddings.json, {len(figures)} similarity heatmaps")
  return {"matrices": {m: [x for x, _ in v] for m, v in methods.items()}, "rows": rows, "groups": proposals,
          "per_target": per_target, "selections": selections}


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from mtl_jax.train import report_errors
  return report_errors("mtl-taskemb", lambda: run(args))
