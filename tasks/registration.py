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
Both register the head kind and label names in mtl_jax.input.task_info.

Tagging alignment: each word's tag sits on its first sub-token, -1 on its other
sub-tokens and on EOS (also after truncation), so metrics see one tag per word.

BOS: a vocabulary with `add_bos` (a pretrained checkpoint's: [CLS] / <s>) gets
bos_id first (tag -1); append_eos_after_trim then trims and appends its EOS
([SEP] / </s>), as HF's truncation keeps both. Vocabularies without `add_bos`
(SentencePiece, seqio's) get none.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping, Sequence

import seqio
import tensorflow as tf

from mtl_jax.step import metrics as mtl_metrics
from mtl_jax.input import task_info
from tasks import validation

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


def _bos(vocabulary) -> tf.Tensor:
  """[bos_id] for a vocabulary that starts every input with one (pretrained: [CLS], <s>), else []."""
  if getattr(vocabulary, "add_bos", False):  # seqio / SentencePiece vocabularies: no BOS
    return tf.constant([vocabulary.bos_id], tf.int32)
  return tf.zeros([0], tf.int32)


def _tokenize_text(ex, vocabulary):
  ids = tf.concat([_bos(vocabulary), tf.cast(vocabulary.encode_tf(ex.pop("text")), tf.int32)], 0)
  return {**ex, "inputs": ids, "tags": tf.zeros([0], tf.int32)}


def _tokenize_tagged(ex, vocabulary):
  """Encodes each word; its tag goes on its first sub-token, -1 on the rest (and on BOS)."""
  pieces = vocabulary.encode_tf(ex.pop("tokens"))  # ragged [words, pieces]
  word_tags = ex.pop("word_tags")
  ids = pieces.flat_values
  starts = pieces.row_starts()
  has_piece = pieces.row_lengths() > 0
  starts = tf.boolean_mask(starts, has_piece)
  tags = tf.tensor_scatter_nd_update(
      tf.fill(tf.shape(ids), -1), tf.expand_dims(starts, 1), tf.boolean_mask(word_tags, has_piece))
  bos = _bos(vocabulary)
  return {**ex, "inputs": tf.concat([bos, tf.cast(ids, tf.int32)], 0),
          "tags": tf.concat([tf.fill(tf.shape(bos), -1), tags], 0)}


def _align_tags(ex):
  """After EOS is appended (and inputs trimmed): tags[i] labels inputs[i]; EOS gets -1."""
  n = tf.shape(ex["inputs"])[0]
  tags = ex["tags"][:n - 1]
  return {**ex, "tags": tf.pad(tags, [[0, n - tf.shape(tags)[0]]], constant_values=-1)}


def _dataset_fn(split, shuffle_files, seed=None, *, examples_fn, kind, task_name, num_labels=0,
                vocabulary):
  """The split tokenized once and held in memory; when shuffling, a fresh seeded
  permutation every epoch (see InMemorySource)."""
  examples = examples_fn(split)
  validation.validate_examples(examples, task=task_name, split=split, kind=kind, num_labels=num_labels)
  ds = tf.data.Dataset.from_tensor_slices(_to_columns(examples, kind, task_name))
  tokenize = _tokenize_tagged if kind == "tagging" else _tokenize_text
  ds = _map(ds, functools.partial(tokenize, vocabulary=vocabulary)).cache()
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
  """Registers `name` in seqio.TaskRegistry and its head kind in mtl_jax.input.task_info."""
  info = task_info.register(task_info.TaskInfo(name, kind, tuple(label_names)))
  source = InMemorySource(
      dataset_fn=functools.partial(_dataset_fn, examples_fn=examples_fn, kind=kind, task_name=name,
                                   num_labels=info.num_classes, vocabulary=vocabulary),
      splits=SPLITS,
      num_input_examples=dict(num_examples) if num_examples else None,
      examples_fn=examples_fn,
  )
  preprocessors = [seqio.preprocessors.append_eos_after_trim]  # tokenized in the source
  if kind == "tagging":
    preprocessors.append(functools.partial(_map, fn=_align_tags))
  return _register(name, source, preprocessors, vocabulary, metric_fns, info.kind,
                   shuffle_buffer_size=None)


class InMemorySource(seqio.FunctionDataSource):
  """A split tokenized once, cached in memory, permuted whole (seeded) every epoch.

  Why not seqio's default: its shuffle is a 1000-example buffer after `repeat`,
  which for small tasks mixes ~1000/n epochs (examples repeat before others are
  seen once). Here every epoch is one uniform permutation, so a task's stream
  visits each example exactly once per epoch, and with seqio's example-level
  sharding (same permutation on every host) each process gets a disjoint part.
  Tokenizing before the cache makes later epochs, and the replay that skips
  batches on resume, cost no tokenization. Sizes come from `examples_fn` (cheap)
  when not given. Callers that let seqio cache small sources in memory
  (`try_in_mem_cache=True`, seqio's default) get the first epoch's order every
  epoch; mtl_jax's input pipeline passes False.
  """

  def __init__(self, dataset_fn, splits, num_input_examples=None, *, examples_fn=None):
    super().__init__(dataset_fn=dataset_fn, splits=splits, num_input_examples=num_input_examples)
    self._examples_fn = examples_fn

  def num_input_examples(self, split: str) -> int | None:
    n = super().num_input_examples(split)
    if n is None and self._examples_fn is not None and split in self.splits:
      n = len(self._examples_fn(split))
    return n

  @property
  def performs_internal_shuffling(self) -> bool:
    return True  # lets the Task skip its buffer shuffle (shuffle_buffer_size=None)

  def get_dataset(self, split="train", shuffle=True, seed=None, shard_info=None, *,
                  sequence_length=None, use_cached=False, num_epochs=1):
    del sequence_length, use_cached, num_epochs  # unused, as in FunctionDataSource
    if shard_info and shard_info.num_shards > 1:
      raise ValueError("InMemorySource is one shard; seqio shards its examples instead")
    return self._dataset_fn(split=split, shuffle_files=shuffle, seed=seed)


def _register(name, source, preprocessors, vocabulary, metric_fns, kind,
              shuffle_buffer_size=seqio.SHUFFLE_BUFFER_SIZE):
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name,
      source=source,
      preprocessors=preprocessors,
      output_features=output_features(vocabulary),
      metric_fns=list(metric_fns if metric_fns is not None else DEFAULT_METRICS[kind]),
      shuffle_buffer_size=shuffle_buffer_size,
  )


# ------------------------------------------------------------------------- TFDS

class TfdsSource(seqio.TfdsDataSource):
  """seqio.TfdsDataSource that never downloads and tolerates missing split metadata.

  Read-only: seqio's loader would otherwise call tfds.load(download=True) at
  training time; here the data must be prepared beforehand (`tfds build
  glue/cola`), else reading fails with a message saying so. Size is None
  (unknown) when TFDS has no split metadata, as under `tfds.testing.mock_data`
  (no dataset_info.json ships for glue / super_glue); callers then count.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.tfds_dataset._read_only = True  # seqio exposes no flag; the loader has one

  def get_dataset(self, *args, **kwargs):
    try:
      return super().get_dataset(*args, **kwargs)
    except AssertionError as e:  # TFDS: "could not find data in ..."
      raise RuntimeError(f"TFDS data for {self.tfds_dataset.name!r} is not prepared and mtl_jax "
                         f"does not download at training time; run `tfds build "
                         f"{self.tfds_dataset.name.split(':')[0]}` first ({e})") from None

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
) -> seqio.Task:
  """Registers a TFDS-backed sentence(-pair) task with the common output features.

  `tfds_name` must carry a version ('glue/cola:2.0.0'); `splits` maps seqio split
  names to TFDS splits (default train/validation; extra evaluation splits are named
  'validation_<x>', see input_pipeline.eval_splits). Regression targets are
  multiplied by `score_scale`. Token tagging from TFDS is not supported here.
  """
  if kind == "tagging":
    raise ValueError(f"task {name!r}: add_tfds_task handles classification/regression only")
  info = task_info.register(task_info.TaskInfo(name, kind, tuple(label_names)))
  splits = dict(splits or {"train": "train", "validation": "validation"})
  source = TfdsSource(tfds_name=tfds_name, splits=splits)
  convert = functools.partial(_from_tfds, text_fields=tuple(text_fields), label_field=label_field,
                              kind=kind, score_scale=float(score_scale), task_name=name)
  preprocessors = [functools.partial(_map, fn=convert),
                   functools.partial(_map, fn=functools.partial(_tokenize_text, vocabulary=vocabulary)),
                   seqio.preprocessors.append_eos_after_trim]
  return _register(name, source, preprocessors, vocabulary, metric_fns, info.kind)


def _map(ds, fn):
  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def add_mixture(name: str, tasks_and_rates: Sequence) -> seqio.Mixture:
  """Registers (or replaces) a seqio.Mixture; rates may be numbers or mtl_jax.input.mixing functions."""
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, tasks_and_rates)
