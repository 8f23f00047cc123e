"""One way to turn labelled examples into a seqio Task the multi-task model can train on.

All tasks share one output-feature schema so any of them can be mixed in a
seqio.Mixture (seqio requires identical features across a mixture's tasks):
  inputs  token ids (+EOS)            label  int class (0 when unused)
  score   float regression target     tags   per-token class ids, -1 = unlabelled
and each example carries its task name in 'task' (a passthrough feature) so the
feature converter can compute `task_id`.

Two ways in:
  add_task       examples from a Python function `examples_fn(split) -> list[dict]`
                 with 'text' (or 'tokens' for tagging) and 'label' / 'score' / 'tags';
                 the in-memory data is fully re-permuted every epoch (seeded).
  add_tfds_task  a TFDS dataset (seqio.TfdsDataSource); its text fields are joined
                 into one input (see `join_fields`), its label becomes 'label' or
                 'score' by kind.
Both register the head kind and label names in mtl_jax.task_info.

Tagging alignment: each word's tag sits on its first sub-token, -1 on its other
sub-tokens and on EOS (also after truncation), so metrics see one tag per word.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping, Sequence

import seqio
import tensorflow as tf

from mtl_jax import metrics as mtl_metrics
from mtl_jax import task_info

SPLITS = ("train", "validation", "test")
_LABEL_VOCAB = seqio.PassThroughVocabulary(size=0)

DEFAULT_METRICS = {
    "classification": (mtl_metrics.accuracy, mtl_metrics.f1_macro),
    "regression": (mtl_metrics.pearson_spearman, mtl_metrics.mse),
    "tagging": (mtl_metrics.span_f1, mtl_metrics.token_accuracy),
}


def output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  return {
      "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32),
      "label": seqio.Feature(vocabulary=_LABEL_VOCAB, add_eos=False, dtype=tf.int32, rank=0),
      "score": seqio.Feature(vocabulary=_LABEL_VOCAB, add_eos=False, dtype=tf.float32, rank=0),
      "tags": seqio.Feature(vocabulary=_LABEL_VOCAB, add_eos=False, dtype=tf.int32),
  }


def _to_columns(examples: Sequence[Mapping], kind: str, task_name: str) -> dict:
  """Python examples -> column dict for tf.data (ragged for tagging)."""
  n = len(examples)
  cols = {"task": [task_name] * n}
  if kind == "tagging":
    cols["tokens"] = tf.ragged.constant([list(e["tokens"]) for e in examples], dtype=tf.string)
    cols["word_tags"] = tf.ragged.constant([list(e["tags"]) for e in examples], dtype=tf.int32)
    cols["label"] = [0] * n
    cols["score"] = [0.0] * n
  else:
    cols["text"] = [e["text"] for e in examples]
    cols["label"] = [int(e.get("label", 0)) for e in examples]
    cols["score"] = [float(e.get("score", 0.0)) for e in examples]
  return cols


def _tokenize_text(ex, vocabulary):
  ids = vocabulary.encode_tf(ex.pop("text"))
  return {**ex, "inputs": ids, "tags": tf.zeros([0], tf.int32)}


def _tokenize_tagged(ex, vocabulary):
  """Encodes each word; its tag goes on its first sub-token, -1 on the rest."""
  pieces = vocabulary.encode_tf(ex.pop("tokens"))  # ragged [words, pieces]
  word_tags = ex.pop("word_tags")
  ids = pieces.flat_values
  starts = pieces.row_starts()
  has_piece = pieces.row_lengths() > 0
  starts = tf.boolean_mask(starts, has_piece)
  tags = tf.tensor_scatter_nd_update(
      tf.fill(tf.shape(ids), -1), tf.expand_dims(starts, 1), tf.boolean_mask(word_tags, has_piece))
  return {**ex, "inputs": ids, "tags": tags}


def _align_tags(ex):
  """After EOS is appended (and inputs trimmed): tags[i] labels inputs[i]; EOS gets -1."""
  n = tf.shape(ex["inputs"])[0]
  tags = ex["tags"][:n - 1]
  return {**ex, "tags": tf.pad(tags, [[0, n - tf.shape(tags)[0]]], constant_values=-1)}


def _dataset_fn(split, shuffle_files, seed=None, *, examples_fn, kind, task_name):
  """The split in memory; when shuffling, a fresh seeded permutation every epoch.

  seqio's own shuffle is a 1000-example buffer after `repeat`; permuting the whole
  split here (reshuffled on each repeat, same sequence for the same seed) makes
  every epoch a uniform permutation and keeps multi-host shards disjoint.
  """
  examples = examples_fn(split)
  ds = tf.data.Dataset.from_tensor_slices(_to_columns(examples, kind, task_name))
  if shuffle_files and examples:
    ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
  return ds


def add_task(
    name: str,
    *,
    kind: str,
    examples_fn: Callable[[str], Sequence[Mapping]],
    vocabulary: seqio.Vocabulary,
    label_names: Sequence[str] = (),
    metric_fns: Sequence[Callable] | None = None,
    num_examples: Mapping[str, int] | None = None,
) -> seqio.Task:
  """Registers `name` in seqio.TaskRegistry and its head kind in mtl_jax.task_info."""
  info = task_info.register(task_info.TaskInfo(name, kind, tuple(label_names)))
  source = seqio.FunctionDataSource(
      dataset_fn=functools.partial(_dataset_fn, examples_fn=examples_fn, kind=kind, task_name=name),
      splits=SPLITS,
      num_input_examples=dict(num_examples) if num_examples else None,
  )
  tokenize = _tokenize_tagged if kind == "tagging" else _tokenize_text
  preprocessors = [functools.partial(_map, fn=functools.partial(tokenize, vocabulary=vocabulary)),
                   seqio.preprocessors.append_eos_after_trim]
  if kind == "tagging":
    preprocessors.append(functools.partial(_map, fn=_align_tags))
  return _register(name, source, preprocessors, vocabulary, metric_fns, info.kind)


def _register(name, source, preprocessors, vocabulary, metric_fns, kind, eval_splits=("validation",)):
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  EVAL_SPLITS[name] = tuple(eval_splits)
  return seqio.TaskRegistry.add(
      name,
      source=source,
      preprocessors=preprocessors,
      output_features=output_features(vocabulary),
      metric_fns=list(metric_fns if metric_fns is not None else DEFAULT_METRICS[kind]),
  )


# ------------------------------------------------------------------------- TFDS

# Task name -> the splits an evaluation should report (first = the one used for
# model selection). Most tasks: ('validation',); MNLI adds 'validation_mismatched'.
EVAL_SPLITS: dict[str, tuple[str, ...]] = {}


def eval_splits(name: str) -> tuple[str, ...]:
  """The evaluable splits of a registered task (default: just 'validation')."""
  return EVAL_SPLITS.get(name, ("validation",))


class TfdsSource(seqio.TfdsDataSource):
  """seqio.TfdsDataSource whose size is None (unknown) when TFDS has no split metadata.

  Why: under `tfds.testing.mock_data` (no dataset_info.json ships for glue /
  super_glue), seqio's size lookup raises KeyError; None lets callers count.
  """

  def num_input_examples(self, split: str):
    try:
      return super().num_input_examples(split)
    except (KeyError, ValueError, AssertionError):
      return None


def join_fields(ex: Mapping[str, tf.Tensor], fields: Sequence[str]) -> tf.Tensor:
  """One text from several fields: 'f1: <text1> f2: <text2> ...' (T5 style).

  A single field is used as is. The field names act as the separator, so the
  format needs no special token and reads the same under any vocabulary.
  """
  if len(fields) == 1:
    return ex[fields[0]]
  parts = []
  for f in fields:
    parts += [tf.constant(f"{f}:"), ex[f]]
  return tf.strings.join(parts, separator=" ")


def _from_tfds(ex, *, text_fields, label_field, kind, score_scale, task_name):
  label = ex[label_field]
  return {
      "text": join_fields(ex, text_fields),
      "label": tf.zeros([], tf.int32) if kind == "regression" else tf.cast(label, tf.int32),
      "score": tf.cast(label, tf.float32) * score_scale if kind == "regression" else tf.zeros([]),
      "task": tf.constant(task_name),
  }


def add_tfds_task(
    name: str,
    *,
    tfds_name: str,
    text_fields: Sequence[str],
    label_field: str = "label",
    kind: str,
    label_names: Sequence[str] = (),
    splits: Mapping[str, str] | None = None,
    metric_fns: Sequence[Callable] | None = None,
    vocabulary: seqio.Vocabulary,
    score_scale: float = 1.0,
    eval_splits: Sequence[str] = ("validation",),
) -> seqio.Task:
  """Registers a TFDS-backed sentence(-pair) task with the common output features.

  `tfds_name` must carry a version ('glue/cola:2.0.0'); `splits` maps seqio split
  names to TFDS splits (default train/validation). Regression targets are
  multiplied by `score_scale`. Token tagging from TFDS is not supported here.
  """
  if kind == "tagging":
    raise ValueError(f"task {name!r}: add_tfds_task handles classification/regression only")
  info = task_info.register(task_info.TaskInfo(name, kind, tuple(label_names)))
  splits = dict(splits or {"train": "train", "validation": "validation"})
  missing = [s for s in eval_splits if s not in splits]
  if missing:
    raise ValueError(f"task {name!r}: eval splits {missing} not in splits {sorted(splits)}")
  source = TfdsSource(tfds_name=tfds_name, splits=splits)
  convert = functools.partial(_from_tfds, text_fields=tuple(text_fields), label_field=label_field,
                              kind=kind, score_scale=float(score_scale), task_name=name)
  preprocessors = [functools.partial(_map, fn=convert),
                   functools.partial(_map, fn=functools.partial(_tokenize_text, vocabulary=vocabulary)),
                   seqio.preprocessors.append_eos_after_trim]
  return _register(name, source, preprocessors, vocabulary, metric_fns, info.kind, eval_splits)


def _map(ds, fn):
  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def add_mixture(name: str, tasks_and_rates: Sequence) -> seqio.Mixture:
  """Registers (or replaces) a seqio.Mixture; rates may be numbers or mtl_jax.mixing functions."""
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, tasks_and_rates)
