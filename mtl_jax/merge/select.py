"""Which hyperparameters: every point of a small grid merged and scored on validation; test for the pick.

Why a grid on validation: lambda, density and drop rate decide a merge (FusionBench: task arithmetic 70.0
at lambda 0.5 on GLUE) and the papers tune them on held-out data. Each candidate is merged leaf by leaf
from the runs' checkpoints (nothing but the merged model and one layer per run in memory) and scored by
the trainer's own Evaluator through the same jitted predict step. The pick is then scored once on the
tasks' test split (run/held_out.py, as every run's end: results.json's test / test_average keys).
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

from mtl_jax.merge import base, fisher, gram


def candidates(method: base.Method, grid: Mapping[str, Sequence] | None = None) -> list[dict]:
  """Every combination of the method's grid, with `grid` (e.g. {'scaling': [0.3, 0.5]}) replacing axes."""
  grid = dict(grid or {})
  unknown = sorted(set(grid) - set(method.grid))
  if unknown:
    raise ValueError(f"merge.grid / --grid {unknown[0]}: merge method {method.name!r} takes {', '.join(method.grid) or 'none'}")
  axes = {**method.grid, **grid}
  names = sorted(axes)
  return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def train_batches(task_names: Sequence[str], task: str, lengths, batch_size: int, examples: int) -> list[dict]:
  """The first `examples` training examples of `task` as padded batches, task ids of `task_names`."""
  import seqio
  from mtl_jax.input.features import EncoderFeatureConverter, pad_batch
  ds = seqio.get_mixture_or_task(task).get_dataset(sequence_length=dict(lengths), split="train", shuffle=False,
                                                    num_epochs=1, try_in_mem_cache=False).take(examples)
  ds = EncoderFeatureConverter(list(task_names))(ds, dict(lengths)).batch(batch_size)
  return [pad_batch(b, batch_size) for b in ds.as_numpy_iterator()]


def statistics(target, method: base.Method, examples: int = 256, batch_size: int = 16) -> list[dict] | None:
  """Per run: its diagonal Fisher or its linear layers' Grams, through its own model on its own tasks."""
  if not method.needs:
    return None
  from mtl_jax.input import task_info
  from mtl_jax.models.multitask import build_model
  from mtl_jax.transfer import init_from
  out = []
  for run in target.runs:
    model = build_model(init_from.encoder_config(run.spec), "hard", run.spec["num_classes"])
    params = run.params([p for p in _shapes(target) if not p.startswith("heads/")] + ["heads/kernel", "heads/bias"])
    kinds = [task_info.get(t).kind for t in run.tasks]
    stats = {}
    for index, task in enumerate(run.tasks):
      batches = train_batches(run.tasks, task, target.settings["lengths"], batch_size, examples)
      if method.needs == "fisher":
        one = fisher.statistics(model, kinds, index, params, batches)
      else:
        one = gram.statistics(model, params, batches)
      for path, value in one.items():  # a multi-task run: its tasks' statistics summed
        stats[path] = stats.get(path, 0.0) + value
    out.append(stats)
    del params
  return out


def validation_evaluator(target):
  from mtl_jax.step import evaluation
  return evaluation.Evaluator(target.names, target.settings["lengths"], target.settings["eval_batch_size"])


def test_keys(target, flat: dict, method: base.Method) -> dict:
  """results.json's held-out keys (run/held_out.py: test, test_average, selected_by, ...) for the pick."""
  from mtl_jax.run import held_out
  params = target.device_params(flat)
  predict = lambda batch: target.steps.run_predict(params, batch)  # noqa: E731
  held = held_out.HeldOut(target.names, target.settings["lengths"], target.settings["eval_batch_size"])
  step = target.settings["train_steps"]
  return held.record(predict, predict, step, step, f"validation average over mtl-merge's {method.name} grid")


def score(target, evaluator, flat: dict) -> dict:
  params = target.device_params(flat)
  return evaluator.evaluate(lambda batch: target.steps.run_predict(params, batch))


def merged(target, method: base.Method, hparams: dict, base_flat: dict | None, stats, seed: int) -> dict:
  keys = [p for p in _shapes(target) if not p.startswith("heads/")]
  if target.sharing == "adapters":  # one merged adapter in every task's slice, on the frozen trunk
    from mtl_jax.merge import adapters
    return {**adapters.merge(method, base_flat, [run.leaves() for run in target.runs], len(target.names), keys,
                             seed, **hparams), **target.heads()}
  trunk = base.merge(method, base_flat, [run.leaves() for run in target.runs], stats, seed, keys=keys, **hparams)
  return {**trunk, **target.heads()}


def pick(target, method: base.Method, grid=None, seed: int = 0, examples: int = 256, test: bool = True,
         log=print) -> dict:
  """{'hparams', 'params' (flat), 'validation' (+ the test keys unless test=False), 'grid': [hparams, average]}."""
  base_flat = target.base_params() if method.uses_base else None
  stats = statistics(target, method, examples)
  evaluator = validation_evaluator(target)
  best, table = None, []
  for hparams in candidates(method, grid):
    flat = merged(target, method, hparams, base_flat, stats, seed)
    record = score(target, evaluator, flat)
    table.append({"hparams": hparams, "validation_average": record["average"]})
    log(f"mtl-merge: {method.name} {_fmt(hparams)} validation average={record['average']:.4f} " +
        " ".join(f"{t}={r['headline']:.3f}" for t, r in record["tasks"].items()))
    if best is None or record["average"] > best["validation"]["average"]:
      best = {"hparams": hparams, "params": flat, "validation": record}
  del base_flat
  best["grid"] = table
  if test:
    best["validation"] = {**best["validation"], **test_keys(target, best["params"], method)}
  return best


def _shapes(target) -> dict:
  import ast
  return {"/".join(ast.literal_eval("[" + p[1:-1].replace("][", ", ") + "]")): tuple(s)
          for p, s in target.spec["param_shapes"].items()}


def _fmt(hparams: dict) -> str:
  return " ".join(f"{k}={v}" for k, v in hparams.items()) or "(no hyperparameters)"
