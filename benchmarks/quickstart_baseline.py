"""Prints a trained run's per-task scores next to the constant (majority-class) baseline.

  python benchmarks/quickstart_baseline.py /tmp/mtl_quick [--mixture quickstart --length 64]

The baseline predicts each task's majority training label, mean training score, or
all-'O' tags, and is scored by the same evaluator and metric functions as the model.
"""

import argparse
import json
import pathlib

import tasks.offline  # noqa: F401
from mtl_jax.step import evaluation
from mtl_jax.input import input_pipeline


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("model_dir", type=pathlib.Path)
  parser.add_argument("--mixture", default="quickstart")
  parser.add_argument("--length", type=int, default=64)
  args = parser.parse_args()
  names = input_pipeline.task_names(input_pipeline.get_provider(args.mixture))
  evaluator = evaluation.Evaluator(names, {"inputs": args.length}, batch_size=64)
  base = evaluator.evaluate(evaluation.constant_predictor(names))
  trained = json.loads((args.model_dir / "results.json").read_text())
  print(f"{'task':20s} {'metric':10s} {'baseline':>9s} {'trained':>9s}")
  for name in names:
    b, t = base["tasks"][name], trained["tasks"][name]
    metric = next(k for k in ("span_f1", "mcc", "pearson", "f1_macro", "accuracy") if k in b)
    print(f"{name:20s} {metric:10s} {b[metric]:9.3f} {t[metric]:9.3f}")
    if "accuracy" in b and metric != "accuracy":
      print(f"{'':20s} {'accuracy':10s} {b['accuracy']:9.3f} {t['accuracy']:9.3f}")
  print(f"{'average (headline)':31s} {base['average']:9.3f} {trained['average']:9.3f}  (step {trained['step']})")


if __name__ == "__main__":
  main()
