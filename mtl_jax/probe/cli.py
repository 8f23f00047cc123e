"""mtl-probe: frozen-featurizer probes (Enso-style): featurize tasks with trunks, fit light models over
training-set sizes x seeds, draw learning curves.

  python -m mtl_jax.probe --featurizer=minilm=all-MiniLM-L6-v2 --featurizer=mine=run:/runs/hard \\
      --tasks=rotten_tomatoes,bbc_topic --sizes=100,300,1000,all --seeds=0,1,2 --models=logreg,mlp \\
      [--scalar_mix] [--max_length=64] [--task_module=tasks.offline] --out_dir=/tmp/probe

--featurizer NAME=CHECKPOINT (a named model or an HF-layout directory) or NAME=run:MODEL_DIR[:TASK]
(any mtl-train run; TASK picks a per-task trunk, or 'mean'). Features are cached under
MTL_JAX_CACHE/probe_features/<name>-<weights fingerprint>/ (a retrained trunk gets new features).
--scalar_mix adds, for each model, a variant reading a learned softmax mix of every layer ('+mix').
Writes OUT_DIR/{probe_results.csv, probe_summary.csv, report.md, plots/curves.png}.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util  # noqa: F401  gin-config 0.5.0 resource_reader uses it without importing it
import os
import pathlib
import sys


def _csv(text: str) -> list[str]:
  return [x.strip() for x in text.split(",") if x.strip()]


def _sizes(text: str) -> list:
  out = []
  for x in _csv(text):
    if x == "all":
      out.append("all")
    elif x.isdigit() and int(x) > 0:
      out.append(int(x))
    else:
      raise argparse.ArgumentTypeError(f"--sizes: {x!r} is not a positive int or 'all'")
  return out


def parse_args(argv):
  p = argparse.ArgumentParser(prog="mtl-probe", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--featurizer", action="append", required=True, help="NAME=CHECKPOINT or NAME=run:MODEL_DIR[:TASK]")
  p.add_argument("--tasks", type=_csv, required=True, help="comma-separated classification / regression tasks "
                 "(QA / multiple choice: a linear token head, --models=logreg)")
  p.add_argument("--sizes", type=_sizes, default=[100, 300, 1000, "all"], help="training-set sizes (or 'all')")
  p.add_argument("--seeds", type=lambda s: [int(x) for x in _csv(s)], default=[0, 1, 2])
  p.add_argument("--models", type=_csv, default=["logreg", "mlp"], help="logreg (ridge for regression), mlp")
  p.add_argument("--scalar_mix", action="store_true", help="also fit each model on a learned mix of all layers")
  p.add_argument("--max_length", type=int, default=64, help="tokens per text (TASK_FEATURE_LENGTHS['inputs'])")
  p.add_argument("--task_module", action="append", default=None, help="module registering the tasks "
                 "(repeatable; default tasks.offline)")
  p.add_argument("--cache_dir", default=None, help="feature cache (default MTL_JAX_CACHE/probe_features)")
  p.add_argument("--out_dir", required=True)
  return p.parse_args(argv)


def run(args, echo=print) -> dict:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  import gin
  gin.clear_config()
  for module in args.task_module or ["tasks.offline"]:
    importlib.import_module(module)
  from mtl_jax.input import task_info
  from mtl_jax.probe import curves, featurize
  unknown = [m for m in args.models if m not in curves.MODELS]
  if unknown:
    raise ValueError(f"--models: unknown {unknown}; use {', '.join(curves.MODELS)}")
  for task in args.tasks:
    task_info.get(task)
  out_dir = pathlib.Path(args.out_dir).absolute()
  out_dir.mkdir(parents=True, exist_ok=True)
  cache = pathlib.Path(args.cache_dir).absolute() if args.cache_dir else None
  featurizers = [featurize.parse(f) for f in args.featurizer]
  names = [f.name for f in featurizers]
  if len(set(names)) != len(names):
    raise ValueError(f"--featurizer names must differ, got {names}")
  rows, train_sizes, eval_split = [], {}, {}
  for feat in featurizers:
    for task in args.tasks:
      import seqio
      splits = seqio.get_mixture_or_task(task).splits
      eval_split[task] = "test" if "test" in splits else "validation"
      data = {s: featurize.features(feat, task, s, args.max_length, cache) for s in ("train", "validation", eval_split[task])}
      train_sizes[task] = len(data["train"]["y"])
      echo(f"mtl-probe: {feat.name} {task}: features train {data['train']['x'].shape}, "
           f"validation {len(data['validation']['y'])}, {eval_split[task]} {len(data[eval_split[task]]['y'])}")
      for model in args.models:
        for mix in ([False, True] if args.scalar_mix else [False]):
          for size in args.sizes:
            for seed in args.seeds:
              idx = curves.subset(train_sizes[task], size, seed)
              train = {k: v[idx] for k, v in data["train"].items()}
              got = curves.fit_and_score(task, model, train, data["validation"], data[eval_split[task]], seed, mix)
              rows.append({"featurizer": feat.name, "task": task, "model": model + ("+mix" if mix else ""),
                           "size": size, "seed": seed, "examples": len(idx), **got})
          label = model + ("+mix" if mix else "")
          done = [r for r in rows if (r["featurizer"], r["task"], r["model"]) == (feat.name, task, label)]
          echo(f"mtl-probe: {feat.name} {task} {label}: " + " ".join(
              f"{r['size']}={r['test']:.3f}" for r in done if r["seed"] == args.seeds[0]))
  summary = curves.summarise(rows)
  curves.write_csv(out_dir / "probe_results.csv", rows,
                   ("featurizer", "task", "model", "size", "seed", "examples", "metric", "valid", "test", "C"))
  curves.write_csv(out_dir / "probe_summary.csv", summary, curves.SUMMARY_FIELDS)
  figure = curves.plot(summary, train_sizes, out_dir / "plots" / "curves.png")
  (out_dir / "report.md").write_text(curves.markdown(summary, {f.name: f.describe for f in featurizers},
                                                     eval_split, figure, out_dir))
  echo(f"mtl-probe: wrote {out_dir / 'report.md'}, probe_results.csv, probe_summary.csv, {figure}")
  return {"rows": rows, "summary": summary}


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from mtl_jax.train import report_errors
  return report_errors("mtl-probe", lambda: run(args))
