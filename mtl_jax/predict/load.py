"""A trained MODEL_DIR as a predictor: `load(model_dir).predict(texts)`.

Why rebuild from config.gin: the run's tasks (including file tasks, tasks/from_files.py),
vocabulary (a pretrained checkpoint's tokenizer or the SentencePiece model), sharing strategy
and its gin settings are all in MODEL_DIR/config.gin; run_spec.json fixes the architecture.
So any later process rebuilds exactly the model and input pipeline that training used: each
input goes through its task's own seqio pipeline (tokenization, BOS/EOS, truncation to
TASK_FEATURE_LENGTHS, the feature converter), then one jitted forward pass per fixed-size
batch (one compile), under the run's logical axis rules on one device. Predictions equal the
evaluator's (argmax class / score / per-token argmax from the same head code); a class also
gets its softmax probability. load() parses the run's config.gin into this process's gin
config (it replaces what was there), as the trainer does.
Fast path: when the run has a matching manifest (mtl_jax/predict/manifest.py: written by training,
or cached by the first full-path predict), its one-text classification / regression / tagging tasks are
featurized in numpy from the vocabulary file and only the model's gin bindings are parsed: no
TensorFlow or seqio import (mtl_jax/predict/fast.py); other tasks set up the full path on first use.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
from typing import Any, Mapping, Sequence

import flax.linen as nn
import gin
import jax
import numpy as np

from mtl_jax import heads as heads_lib
from mtl_jax.heads import multiple_choice, span_qa
from mtl_jax.scale import partitioning
from mtl_jax.input import task_info
from mtl_jax.predict import config_trust, fast, inputs as inputs_lib, manifest as manifest_lib
from mtl_jax.run import quiet_orbax

CHECKPOINTS = ("auto", "best", "latest")


@gin.configurable(module="mtl_jax.predict")
def run_settings(mixture_or_task_name=gin.REQUIRED, task_feature_lengths=gin.REQUIRED):
  """The run's task set and lengths as its config.gin resolves them (file tasks register here)."""
  return mixture_or_task_name, task_feature_lengths


def _forward(model, rules, params, batch):
  with nn.logical_axis_rules(rules):  # as Steps.predict_step: the activation constraints are live
    out = model.apply({"params": params}, batch, deterministic=True)
  preds = {kind: heads_lib.KINDS[kind].predict(out) for kind in heads_lib.KINDS}
  preds["probability"] = jax.nn.softmax(out.pooled_logits, axis=-1)
  return preds


class Predictor:
  """A model, its params and its tasks; `predict` maps inputs to per-task predictions."""

  def __init__(self, model, params, task_names: Sequence[str], feature_lengths: Mapping[str, int],
               batch_size: int = 32, *, step: int | None = None, checkpoint: str | None = None,
               featurizer=None, file_specs: Mapping | None = None, full_setup=None):
    """featurizer / file_specs / full_setup: the fast path's numpy features and file-task specs
    (mtl_jax/predict/fast.py), and how to set up the full pipeline for a task it does not cover."""
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    self.task_names = tuple(task_names)
    self.infos = {i.name: i for i in task_info.get_all(self.task_names)}
    self.feature_lengths = dict(feature_lengths)
    self.batch_size, self.step, self.checkpoint = batch_size, step, checkpoint
    self.mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
    rules = partitioning.logical_axis_rules()
    self.model, self.params = model, params
    self._forward = jax.jit(functools.partial(_forward, model, rules))
    self._featurizer, self._file_specs, self._full_setup = featurizer, file_specs, full_setup

  # ------------------------------------------------------------------ features
  def features(self, task: str, examples: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """Model features [N, ...] of `examples` through `task`'s own seqio pipeline (as in evaluation), or
    the fast path's numpy equivalent (mtl_jax/predict/fast.py) for the tasks it covers."""
    if self._featurizer is not None and self._featurizer.supports(task):
      return self._featurizer(task, list(examples))
    if self._full_setup is not None:  # the fast path met a task it does not cover: register the tasks now
      self._full_setup()
      self._full_setup = None
    return pipeline_features(task, examples, self.task_names, self.feature_lengths)

  def run(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw predictions for [N, ...] features, in fixed batches of `batch_size` (the last one padded)."""
    n = len(features["task_id"])
    outs = []
    for start in range(0, n, self.batch_size):
      batch = {k: v[start:start + self.batch_size] for k, v in features.items()}
      rows = len(batch["task_id"])
      if rows < self.batch_size:
        batch = {k: np.concatenate([v, np.full((self.batch_size - rows,) + v.shape[1:], -1 if k == "tags" else 0,
                                              v.dtype)]) for k, v in batch.items()}
      with jax.set_mesh(self.mesh):
        out = jax.device_get(self._forward(self.params, batch))
      outs.append({k: v[:rows] for k, v in out.items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

  # ------------------------------------------------------------------ predictions
  def predict(self, texts: Sequence[str | Mapping[str, Any]], tasks: Sequence[str] | None = None,
              source: str = "input") -> list[dict]:
    """One dict per input: {task: {'label', 'probability'} | {'score'} | {'tags', 'words'} |
    {'choice', 'text', 'probability'} | {'answer', 'start', 'score'} (extractive QA; '' = no answer)}.

    An input is a text, or a dict of the task's fields (a file task's text_fields, 'text', or
    'tokens' for tagging). Tagging texts are split into words on whitespace; a word cut off by
    TASK_FEATURE_LENGTHS gets the tag None. `source` names the inputs in errors (the --input file)."""
    tasks = self._tasks(tasks)
    texts = list(texts)
    if not texts:
      raise ValueError("no inputs to predict")
    results = [{} for _ in texts]
    for task in tasks:
      examples = inputs_lib.examples_for(task, texts, source, self.task_names if len(tasks) > 1 else (),
                                         self._file_specs)
      feats = self.features(task, examples)
      out = self.run(feats)
      if self.infos[task].kind == "span_qa":  # rows are windows: each question's best span over its windows
        real = feats["input_mask"].sum(1)
        found = span_qa.decode(examples, [t[:n] for t, n in zip(feats["tags"], real)],
                               [lg[:n] for lg, n in zip(out["span_qa"], real)], null_threshold=0.0)
        for i, answer in enumerate(found):
          results[i][task] = {"answer": answer.text, "start": answer.char_start, "score": answer.score}
        continue
      for i, example in enumerate(examples):
        results[i][task] = self._describe(task, out, feats, i, example)
    return results

  def _describe(self, task, out, feats, i, example) -> dict:
    info = self.infos[task]
    if info.kind == "classification":
      label = int(out["classification"][i])
      return {"label": info.label_names[label], "probability": float(out["probability"][i][label])}
    if info.kind == "regression":
      return {"score": float(out["regression"][i])}
    if info.kind == "multiple_choice":  # heads/multiple_choice.py: per-token scores + the choice tags
      choice, probability = multiple_choice.choose(out["multiple_choice"][i], feats["tags"][i])
      return {"choice": choice, "text": example["choices"][choice], "probability": probability}
    starts = np.flatnonzero(feats["tags"][i] >= 0)  # each kept word's first sub-token
    words = list(example["tokens"])
    tags = [info.label_names[int(out["tagging"][i][p])] for p in starts]
    return {"words": words, "tags": tags + [None] * (len(words) - len(tags))}

  def _tasks(self, tasks) -> tuple[str, ...]:
    if tasks is None:
      return self.task_names
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in self.task_names]
    if unknown or not tasks:
      raise ValueError(f"--tasks: {', '.join(unknown) or 'none given'} not in this run; its tasks: "
                       + ", ".join(self.task_names))
    return tasks


def pipeline_features(task: str, examples: Sequence[Mapping], task_names: Sequence[str],
                      feature_lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
  """Model features [N, ...] of `examples` through `task`'s registered seqio pipeline and the
  trainer's feature converter (what evaluation feeds the model)."""
  import seqio
  from mtl_jax.input.features import EncoderFeatureConverter
  from tasks import registration
  original = seqio.get_mixture_or_task(task)
  fn = getattr(original.source, "_dataset_fn", None)  # registration.InMemorySource's partial
  if not isinstance(original.source, registration.InMemorySource) or not isinstance(fn, functools.partial):
    raise ValueError(f"task {task!r} is not registered with tasks.registration.add_task (a TFDS task?); "
                     "mtl-predict reads add_task tasks (offline, synthetic, file tasks)")
  examples = list(examples)
  source = registration.InMemorySource(
      dataset_fn=functools.partial(fn.func, *fn.args, **{**fn.keywords, "examples_fn": lambda split: examples}),
      splits=registration.SPLITS, examples_fn=lambda split: examples)
  ds = original.replace(source=source).get_dataset(
      sequence_length=feature_lengths, split="validation", shuffle=False, num_epochs=1,
      try_in_mem_cache=False)
  ds = EncoderFeatureConverter(task_names)(ds, feature_lengths)
  rows = list(ds.as_numpy_iterator())
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _checkpoint_step(model_dir: pathlib.Path, which: str) -> str:
  if which not in CHECKPOINTS:
    raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
  if which != "auto":
    return which
  best = model_dir / "checkpoints_best"
  return "best" if best.is_dir() and any(p.name.isdigit() for p in best.iterdir()) else "latest"


def load(model_dir: str | os.PathLike, checkpoint: str = "auto", batch_size: int = 32,
         trust_config: bool = False) -> Predictor:
  """The run in `model_dir` from its best checkpoint ('auto': best if saved, else latest). Its config.gin
  may import only this project's modules unless `trust_config` (mtl_jax/predict/config_trust.py)."""
  from mtl_jax.models.multitask import build_model
  from mtl_jax.transfer import init_from
  model_dir = pathlib.Path(model_dir).absolute()
  spec_path, config_path = model_dir / "run_spec.json", model_dir / "config.gin"
  if not spec_path.is_file() or not config_path.is_file():
    raise ValueError(f"--model_dir {str(model_dir)!r} has no run_spec.json / config.gin; point it at an mtl-train "
                     "MODEL_DIR")
  config_trust.check(config_path, trust_config)  # before gin runs its imports
  quiet_orbax.install()  # no "Metadata file does not exist" warning for checkpoints_best
  which = _checkpoint_step(model_dir, checkpoint)
  spec = json.loads(spec_path.read_text())
  recorded = manifest_lib.read(model_dir)  # the fast path: no TensorFlow / seqio (mtl_jax/predict/fast.py)
  if recorded is not None and recorded["tasks"] == list(spec["tasks"]) and any(
      t.get("fast") for t in recorded["task_specs"].values()):
    fast.parse_model_config(config_path.read_text(), recorded)
    for name in recorded["tasks"]:
      task_info.register(task_info.TaskInfo(name, recorded["task_specs"][name]["kind"],
                                            tuple(recorded["task_specs"][name]["label_names"])))
    names, lengths = recorded["tasks"], recorded["feature_lengths"]
    model = build_model(init_from.encoder_config(spec), spec["sharing"], spec["num_classes"])
    params, step = init_from.restore_params(model_dir, which)
    return Predictor(model, params, names, lengths, batch_size, step=step, checkpoint=which,
                     featurizer=fast.Featurizer(recorded, names, lengths), file_specs=fast.file_specs(recorded),
                     full_setup=functools.partial(_full_config, model_dir, spec))
  names, lengths = _full_config(model_dir, spec)
  model = build_model(init_from.encoder_config(spec), spec["sharing"], spec["num_classes"])
  params, step = init_from.restore_params(model_dir, which)
  if recorded is None:  # the next predict of this run takes the fast path
    manifest_lib.write(model_dir, names, lengths, path=manifest_lib.cache_path(model_dir))
  return Predictor(model, params, names, lengths, batch_size, step=step, checkpoint=which)


def _full_config(model_dir: pathlib.Path, spec: dict):
  """Parses the run's config.gin whole (its task modules register the tasks: seqio, TensorFlow);
  (task names, feature lengths)."""
  from mtl_jax.input import input_pipeline
  from mtl_jax import train
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")  # TF is only the input pipeline
  except RuntimeError:
    pass
  train.parse_gin([str(model_dir / "config.gin")], [])
  for param in ("mixture_or_task_name", "task_feature_lengths"):
    gin.bind_parameter(f"mtl_jax.predict.run_settings.{param}", gin.query_parameter(f"trainer.train.{param}"))
  name, lengths = run_settings()
  names = input_pipeline.task_names(input_pipeline.get_provider(name))
  if list(names) != list(spec["tasks"]):
    raise ValueError(f"config.gin of {model_dir} now gives tasks {list(names)} but the run trained "
                     f"{spec['tasks']}; restore the task definitions")
  from mtl_jax.run import run_spec
  if run_spec.choice_record(names) is not None:  # the layout its multiple-choice rows trained on (old runs: one row)
    gin.bind_parameter("choice_encoding.encoding", spec.get("choice_encoding") or "one_row")
  return names, lengths
