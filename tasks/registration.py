"""One way to turn labelled examples into a seqio Task the multi-task model can train on.

All tasks share one output-feature schema so any of them can be mixed in a
seqio.Mixture (seqio requires identical features across a mixture's tasks):
  inputs  token ids (+EOS)            label  int class (0 when unused)
  score   float regression target     tags   per-token class ids, -1 = unlabelled
  token_type  segment ids (0 / 1 for a natively encoded pair; empty = all 0)
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

Several texts (a sentence pair, GLUE's multi-field tasks, file tasks with two
text_fields): examples carry 'texts' (one string per field, `text_fields` names
them); each text is tokenized on its own and `_pack` builds the input at the run's
length (mtl_jax/input/pairs.py): `pair_format='native'` (two texts: the checkpoint's
`[CLS] a [SEP] b [SEP]` / `<s> a </s></s> b </s>` with token types, HF's
longest-first truncation) or 'join' (T5 style 'f1: a f2: b', any number of texts;
also used for more than two). Either way the longer text is cut first and both
keep tokens.

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

from mtl_jax.heads import multiple_choice, span_qa
from mtl_jax.step import metrics as mtl_metrics
from mtl_jax.input import example_cache, pairs, task_info
from tasks import validation

SPLITS = ("train", "validation", "test")
DOC_STRIDE = 32      # extractive QA: tokens shared by consecutive windows of a long context
MAX_QUESTION = 64    # extractive QA: question tokens kept
_LABEL_VOCAB = seqio.PassThroughVocabulary(size=0)

DEFAULT_METRICS = {
    "classification": (mtl_metrics.accuracy, mtl_metrics.f1_macro),
    "regression": (mtl_metrics.pearson_spearman, mtl_metrics.mse),
    "tagging": (mtl_metrics.span_f1, mtl_metrics.token_accuracy),
    "multiple_choice": (mtl_metrics.accuracy,),
}


def output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  return {
      "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32),
      "label": seqio.Feature(vocabulary=_LABEL_VOCAB, add_eos=False, dtype=tf.int32, rank=0),
      "score": seqio.Feature(vocabulary=_LABEL_VOCAB, add_eos=False, dtype=tf.float32, rank=0),
      "tags": seqio.Feature(vocabulary=_LABEL_VOCAB, add_eos=False, dtype=tf.int32),
      "token_type": seqio.Feature(vocabulary=_LABEL_VOCAB, add_eos=False, dtype=tf.int32),
  }


def _to_columns(examples: Sequence[Mapping], kind: str, task_name: str, num_slots: int = 0) -> dict:
  """Python examples -> column dict for tf.data (ragged for tagging)."""
  n = len(examples)
  cols = {"task": [task_name] * n}
  if kind == "span_qa":
    cols["text"] = [e["text"] for e in examples]
    spans = [span_qa.words(e["context"]) for e in examples]
    cols["context_words"] = tf.ragged.constant([[e["context"][a:b] for a, b in sp] or [""]
                                                for e, sp in zip(examples, spans)], dtype=tf.string)
    cols["answer_words"] = [_answer_words(e, sp) for e, sp in zip(examples, spans)]
    cols["label"] = [0] * n
    cols["score"] = [0.0] * n
  elif kind == "tagging":
    cols["tokens"] = tf.ragged.constant([list(e["tokens"]) for e in examples], dtype=tf.string)
    cols["word_tags"] = tf.ragged.constant([list(e["tags"]) for e in examples], dtype=tf.int32)
    cols["label"] = [0] * n
    cols["score"] = [0.0] * n
  else:
    cols["text"] = [e["text"] for e in examples]
    if examples and "texts" in examples[0]:
      cols["texts"] = [list(e["texts"]) for e in examples]
    if kind == "multiple_choice":
      cols["choices"] = [list(e["choices"]) + [""] * (num_slots - len(e["choices"])) for e in examples]
      cols["num_choices"] = [len(e["choices"]) for e in examples]
    cols["label"] = [int(e.get("label", 0)) for e in examples]
    cols["score"] = [float(e.get("score", 0.0)) for e in examples]
  return cols


def _answer_words(example, spans) -> list[int]:
  """[first word, last word] of the example's first gold answer; [-1, -1] for no answer."""
  if not example["answers"]:
    return [-1, -1]
  a = example["answers"][0]
  start, end = a["answer_start"], a["answer_start"] + len(a["text"])
  inside = [k for k, (s, e) in enumerate(spans) if e > start and s < end]
  return [inside[0], inside[-1]] if inside else [-1, -1]


def _tokenize_qa(ex, vocabulary):
  """Question ids, and the context's word pieces with each piece's word index ('ctx_word')."""
  pieces = vocabulary.encode_tf(ex.pop("context_words"))  # ragged [words, pieces]
  return {**ex, "question_ids": tf.cast(vocabulary.encode_tf(ex.pop("text")), tf.int32),
          "ctx": tf.cast(pieces.flat_values, tf.int32), "ctx_word": tf.cast(pieces.value_rowids(), tf.int32),
          "tags": tf.zeros([0], tf.int32), "token_type": tf.zeros([0], tf.int32)}


def _qa_windows(ds, sequence_length=None, *, vocabulary, doc_stride=DOC_STRIDE, max_question=MAX_QUESTION):
  """One row per window: `prefix question middle context[s:e] suffix` (the pair layout), consecutive
  windows sharing `doc_stride` context tokens (at most half a window); 'tags' = each context token's
  word index, elsewhere -2 in a question's first window and -1 in the others,
  'label' / 'score' = the answer's start / end position when it lies wholly in the window, else 0 / 0
  (the null answer at the first token)."""
  length = (sequence_length or {}).get("inputs")

  def rows(ex):
    layout = pairs.layout_for(vocabulary)
    const = lambda ids: tf.constant(list(ids), tf.int32, [len(ids)])
    head = tf.concat([const(layout.prefix), ex["question_ids"][:max_question], const(layout.middle)], 0)
    ctx, word = ex["ctx"], ex["ctx_word"]
    n = tf.size(ctx)
    budget = n if length is None else tf.maximum(length - tf.size(head) - len(layout.suffix), 1)
    step = tf.maximum(budget - tf.minimum(doc_stride, budget // 2), 1)  # overlap at most half a window
    count = 1 + (tf.maximum(n - budget, 0) + step - 1) // step
    first, last = ex["answer_words"][0], ex["answer_words"][1]
    positions = tf.range(n)
    start_piece = tf.reduce_min(tf.where(word == first, positions, n))
    end_piece = tf.reduce_max(tf.where(word == last, positions, -1))
    has = (first >= 0) & (start_piece < n) & (end_piece >= start_piece)
    rest = {k: v for k, v in ex.items() if k not in ("question_ids", "ctx", "ctx_word", "answer_words")}

    def window(w):
      w = tf.cast(w, tf.int32)
      s = w * step
      e = tf.minimum(s + budget, n)
      ids = tf.concat([head, ctx[s:e], const(layout.suffix)], 0)
      # -2 on a question's first window (so the metric can regroup windows), -1 on the others'
      outside = tf.where(w == 0, -2, -1)
      tags = tf.concat([tf.fill([tf.size(head)], outside), word[s:e], tf.fill([len(layout.suffix)], outside)], 0)
      types = tf.concat([tf.zeros([tf.size(head)], tf.int32), tf.fill([e - s + len(layout.suffix)], layout.type_b)], 0)
      inside = has & (start_piece >= s) & (end_piece < e)
      start = tf.where(inside, tf.size(head) + start_piece - s, 0)
      end = tf.where(inside, tf.size(head) + end_piece - s, 0)
      return {**rest, "inputs": ids, "tags": tags, "token_type": types, "label": start,
              "score": tf.cast(end, tf.float32)}
    return tf.data.Dataset.range(tf.cast(count, tf.int64)).map(window)
  return ds.flat_map(rows)


def _check_qa(examples, task_name, split):
  for i, e in enumerate(examples):
    where = f"task {task_name!r} {split} example {i}"
    if not isinstance(e.get("text"), str) or not e["text"].strip():
      raise ValueError(f"{where}: empty question; every QA example needs one")
    if not isinstance(e.get("context"), str) or not e["context"].strip():
      raise ValueError(f"{where}: empty context")
    if not isinstance(e.get("answers"), (list, tuple)):
      raise ValueError(f"{where}: 'answers' must be a list of {{'text', 'answer_start'}} ([] = no answer)")
    for a in e["answers"]:
      span_qa.check_answer(e["context"], a.get("text", ""), a.get("answer_start"), where)


def _bos(vocabulary) -> tf.Tensor:
  """[bos_id] for a vocabulary that starts every input with one (pretrained: [CLS], <s>), else []."""
  if getattr(vocabulary, "add_bos", False):  # seqio / SentencePiece vocabularies: no BOS
    return tf.constant([vocabulary.bos_id], tf.int32)
  return tf.zeros([0], tf.int32)


def _tokenize_text(ex, vocabulary):
  ids = tf.concat([_bos(vocabulary), tf.cast(vocabulary.encode_tf(ex.pop("text")), tf.int32)], 0)
  return {**ex, "inputs": ids, "tags": tf.zeros([0], tf.int32), "token_type": tf.zeros([0], tf.int32)}


def _tokenize_texts(ex, vocabulary, num_texts: int):
  """Each of the example's texts tokenized on its own ('segment_i'); `_pack` joins them at the length."""
  texts = ex.pop("texts")
  ex.pop("text", None)
  out = {**ex, "tags": tf.zeros([0], tf.int32)}
  for i in range(num_texts):
    out[f"segment_{i}"] = tf.cast(vocabulary.encode_tf(texts[i]), tf.int32)
  out["second_empty"] = tf.equal(texts[1], "")
  return out


def _tokenize_choices(ex, vocabulary, num_slots: int):
  """Context ('text') and each choice slot tokenized on their own; `_pack_choices` lays them out."""
  choices = ex.pop("choices")
  out = {**ex, "segment_0": tf.cast(vocabulary.encode_tf(ex.pop("text")), tf.int32), "tags": tf.zeros([0], tf.int32)}
  out.pop("text", None)
  for j in range(num_slots):
    out[f"choice_{j}"] = tf.cast(vocabulary.encode_tf(choices[j]), tf.int32)
  return out


def _pack_choices(ds, sequence_length=None, *, vocabulary, num_slots):
  """The example's choices as one row (heads/multiple_choice.py, gin choice_encoding.encoding):
  'pairs' (default) each (context, choice_i) pair native (pairs.py) at length // n_choices, every token
  of pair i tagged multiple_choice.pair_tag(i); 'one_row' `prefix context middle choice_0 suffix
  choice_1 suffix ...`, tags = i on choice i's tokens, -1 elsewhere, texts cut longest first."""
  if multiple_choice.encoding() == "pairs":
    return _pack_choice_pairs(ds, sequence_length, vocabulary=vocabulary, num_slots=num_slots)
  length = (sequence_length or {}).get("inputs")

  def pack(ex):
    layout = pairs.layout_for(vocabulary)
    n = tf.cast(ex.pop("num_choices"), tf.int32)
    context = ex.pop("segment_0")
    choices = [ex.pop(f"choice_{j}") for j in range(num_slots)]
    sizes = tf.stack([tf.size(context)] + [tf.where(j < n, tf.size(c), 0) for j, c in enumerate(choices)])
    kept = sizes
    if length is not None:
      fixed = len(layout.prefix) + len(layout.middle) + n * len(layout.suffix)
      kept = pairs.water_fill(sizes, length - fixed)
    const = lambda ids: tf.constant(list(ids), tf.int32, [len(ids)])
    ids = [const(layout.prefix), context[:kept[0]], const(layout.middle)]
    tags = [tf.fill([tf.size(i)], -1) for i in ids]
    for j, choice in enumerate(choices):
      piece = choice[:kept[j + 1]]
      suffix = const(layout.suffix)[:tf.where(j < n, len(layout.suffix), 0)]
      ids += [piece, suffix]
      tags += [tf.fill([tf.size(piece)], j), tf.fill([tf.size(suffix)], -1)]
    first = tf.size(ids[0]) + tf.size(ids[1]) + tf.size(ids[2])
    ids, tags = tf.concat(ids, 0), tf.concat(tags, 0)
    types = tf.concat([tf.zeros([first], tf.int32), tf.fill([tf.size(ids) - first], layout.type_b)], 0)
    return {**ex, "inputs": ids, "tags": tags, "token_type": types}
  return _map(ds, pack)


def _pack_choice_pairs(ds, sequence_length=None, *, vocabulary, num_slots):
  """Pairs `prefix context middle choice_i suffix` one after the other, each cut as HF's
  `tokenizer(context, choice_i, truncation=True, max_length=length // n_choices)`."""
  length = (sequence_length or {}).get("inputs")

  def pack(ex):
    layout = pairs.layout_for(vocabulary)
    n = tf.cast(ex.pop("num_choices"), tf.int32)
    context = tf.cast(ex.pop("segment_0"), tf.int32)
    const = lambda part: tf.constant(list(part), tf.int32, [len(part)])
    ids, types, tags = [], [], []
    for j in range(num_slots):
      choice = tf.cast(ex.pop(f"choice_{j}"), tf.int32)
      ctx = context
      if length is not None:
        ka, kb = pairs.longest_first(tf.size(context), tf.size(choice),
                                     tf.maximum(length // tf.maximum(n, 1) - layout.num_specials, 0))
        ctx, choice = context[:ka], choice[:kb]
      first = tf.concat([const(layout.prefix), ctx, const(layout.middle)], 0)
      second = tf.concat([choice, const(layout.suffix)], 0)
      present = j < n
      first, second = first[:tf.where(present, tf.size(first), 0)], second[:tf.where(present, tf.size(second), 0)]
      ids += [first, second]
      types += [tf.zeros_like(first), tf.fill([tf.size(second)], layout.type_b)]
      tags.append(tf.fill([tf.size(first) + tf.size(second)], multiple_choice.pair_tag(j)))
    return {**ex, "inputs": tf.concat(ids, 0), "tags": tf.concat(tags, 0), "token_type": tf.concat(types, 0)}
  return _map(ds, pack)


def _check_choices(examples, num_slots, task_name, split):
  for i, e in enumerate(examples):
    choices = e.get("choices")
    if not isinstance(choices, (list, tuple)) or not 2 <= len(choices) <= num_slots or not all(
        isinstance(c, str) and c.strip() for c in choices):
      raise ValueError(f"task {task_name!r} {split} example {i}: 'choices' must be 2 to {num_slots} non-empty "
                       f"texts, got {choices!r}")
    if not isinstance(e.get("label"), int) or not 0 <= e["label"] < len(choices):
      raise ValueError(f"task {task_name!r} {split} example {i}: label {e.get('label')!r} is not the index of "
                       f"one of its {len(choices)} choices")


def _pack(ds, sequence_length=None, *, vocabulary, text_fields, pair_format):
  """'segment_i' -> 'inputs' + 'token_type' at the run's input length (pairs.native / pairs.joined)."""
  length = (sequence_length or {}).get("inputs")
  k = len(text_fields)

  def pack(ex):
    segments = [ex.pop(f"segment_{i}") for i in range(k)]
    second_empty = ex.pop("second_empty")
    if pair_format == "native" and k == 2:
      ids, types = pairs.native(segments[0], segments[1], pairs.layout_for(vocabulary), length, second_empty)
    else:
      names = [tf.cast(vocabulary.encode_tf(tf.constant(f"{f}:")), tf.int32) for f in text_fields]
      bos = [vocabulary.bos_id] if getattr(vocabulary, "add_bos", False) else []
      ids, types = pairs.joined(names, segments, bos, vocabulary.eos_id, length)
    return {**ex, "inputs": ids, "token_type": types}
  return _map(ds, pack)


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
          "tags": tf.concat([tf.fill(tf.shape(bos), -1), tags], 0), "token_type": tf.zeros([0], tf.int32)}


def _align_tags(ex):
  """After EOS is appended (and inputs trimmed): tags[i] labels inputs[i]; EOS gets -1."""
  n = tf.shape(ex["inputs"])[0]
  tags = ex["tags"][:n - 1]
  return {**ex, "tags": tf.pad(tags, [[0, n - tf.shape(tags)[0]]], constant_values=-1)}


def _dataset_fn(split, shuffle_files, seed=None, *, examples_fn, kind, task_name, num_labels=0,
                vocabulary, num_texts=1):
  """The split tokenized once and held in memory; when shuffling, a fresh seeded
  permutation every epoch (see InMemorySource)."""
  examples = examples_fn(split)
  if kind == "multiple_choice":
    _check_choices(examples, num_labels, task_name, split)
  elif kind == "span_qa":
    _check_qa(examples, task_name, split)
  else:
    validation.validate_examples(examples, task=task_name, split=split, kind=kind, num_labels=num_labels)
  ds = tf.data.Dataset.from_tensor_slices(_to_columns(examples, kind, task_name, num_labels))
  if kind == "multiple_choice":
    tokenize = functools.partial(_tokenize_choices, num_slots=num_labels)
  elif kind == "span_qa":
    tokenize = _tokenize_qa
  elif num_texts > 1:
    _check_texts(examples, num_texts, task_name, split)
    tokenize = functools.partial(_tokenize_texts, num_texts=num_texts)
  else:
    tokenize = _tokenize_tagged if kind == "tagging" else _tokenize_text
  ds = example_cache.tokenized(functools.partial(_map, ds, functools.partial(tokenize, vocabulary=vocabulary)),
                              task_name=task_name, split=split, vocabulary=vocabulary, tokenize=tokenize,
                              recipe={"kind": kind, "slots": num_labels, "texts": num_texts}).cache()
  if shuffle_files and examples:
    ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
  return ds


def _check_texts(examples, num_texts, task_name, split):
  for i, e in enumerate(examples):
    texts = e.get("texts")
    if not isinstance(texts, (list, tuple)) or len(texts) != num_texts or not all(isinstance(t, str) for t in texts):
      raise ValueError(f"task {task_name!r} {split} example {i}: 'texts' must be {num_texts} strings (one per "
                       f"text field), got {texts!r}")


def add_task(
    name: str,
    *,
    kind: str,
    examples_fn: Callable[[str], Sequence[Mapping]],
    vocabulary: seqio.Vocabulary,
    label_names: Sequence[str] = (),
    metric_fns: Sequence[Callable] | None = None,
    num_examples: Mapping[str, int] | None = None,
    text_fields: Sequence[str] = (),
    pair_format: str = "native",
    splits: Sequence[str] = SPLITS,
) -> seqio.Task:
  """Registers `name` in seqio.TaskRegistry and its head kind in mtl_jax.input.task_info.

  With two or more `text_fields` each example carries 'texts' (one string per field) and the
  input is built by `pair_format` (module docstring); else 'text'. `splits`: the ones the task
  has (a source without a labelled test split leaves 'test' out)."""
  info = task_info.register(task_info.TaskInfo(name, kind, tuple(label_names)))
  text_fields = tuple(text_fields)
  pairs.check_format(pair_format, f"task {name!r}")
  source = InMemorySource(
      dataset_fn=functools.partial(_dataset_fn, examples_fn=examples_fn, kind=kind, task_name=name,
                                   num_labels=(len(info.label_names) if kind == "multiple_choice"
                                               else info.num_classes), vocabulary=vocabulary,
                                   num_texts=max(len(text_fields), 1)),
      splits=tuple(splits),
      num_input_examples=dict(num_examples) if num_examples else None,
      examples_fn=examples_fn,
      permutes_whole_split=True,  # _dataset_fn: cache, then one seeded permutation of the split per epoch
  )
  preprocessors = [seqio.preprocessors.append_eos_after_trim]  # tokenized in the source
  if len(text_fields) > 1:
    preprocessors = [functools.partial(_pack, vocabulary=vocabulary, text_fields=text_fields,
                                       pair_format=pair_format)]
  if kind == "multiple_choice":  # 'text' = the context, 'choices' = its 2..len(label_names) choices
    preprocessors = [functools.partial(_pack_choices, vocabulary=vocabulary, num_slots=len(info.label_names))]
  if kind == "span_qa":  # 'text' = the question, 'context', 'answers' [{'text', 'answer_start'}] ([] = none)
    preprocessors = [functools.partial(_qa_windows, vocabulary=vocabulary)]
    if metric_fns is None:
      metric_fns = [span_qa.squad_metric(examples_fn)]
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

  def __init__(self, dataset_fn, splits, num_input_examples=None, *, examples_fn=None,
               permutes_whole_split: bool = False):
    super().__init__(dataset_fn=dataset_fn, splits=splits, num_input_examples=num_input_examples)
    self._examples_fn = examples_fn
    self._permutes_whole_split = permutes_whole_split

  @property
  def permutes_whole_split(self) -> bool:
    """True when get_dataset(shuffle=True, seed=s) is get_dataset(shuffle=False) followed by
    `shuffle(n, seed=s, reshuffle_each_iteration=True)` over its n examples (`_dataset_fn`), so the
    train stream can run as permuted row indices (mtl_jax/input/index_stream.py)."""
    return self._permutes_whole_split

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
  """One text from several fields: 'f1: <text1> f2: <text2> ...' (T5 style; as a display /
  hashing form: the model input of several fields is built by `_pack`, which cuts the longer
  text first).

  A single field is used as is. The field names act as the separator, so the
  format needs no special token and reads the same under any vocabulary.
  """
  if len(fields) == 1:
    return ex[fields[0]]
  parts = []
  for f in fields:
    parts += [tf.constant(f"{f}:"), ex[f]]
  return tf.strings.join(parts, separator=" ")


def _from_tfds(ex, *, text_fields, label_field, kind, score_scale, task_name, choice_fields=()):
  label = ex[label_field]
  if choice_fields:  # multiple choice: the context T5-joined, one choice per field
    texts = {"text": join_fields(ex, text_fields), "choices": tf.stack([ex[f] for f in choice_fields]),
             "num_choices": tf.constant(len(choice_fields), tf.int32)}
  elif len(text_fields) > 1:
    texts = {"texts": tf.stack([ex[f] for f in text_fields])}
  else:
    texts = {"text": ex[text_fields[0]]}
  return {
      **texts,
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
    pair_format: str = "native",
    choice_fields: Sequence[str] = (),
) -> seqio.Task:
  """Registers a TFDS-backed sentence(-pair) task with the common output features.

  `tfds_name` must carry a version ('glue/cola:2.0.0'); `splits` maps seqio split
  names to TFDS splits (default train/validation; extra evaluation splits are named
  'validation_<x>', see input_pipeline.eval_splits). Regression targets are
  multiplied by `score_scale`. Token tagging from TFDS is not supported here. Several text
  fields: `pair_format` (module docstring). Multiple choice: `text_fields` form the context,
  `choice_fields` the choices (one per field), the label the right one's index.
  """
  if kind == "tagging":
    raise ValueError(f"task {name!r}: add_tfds_task handles classification/regression only")
  info = task_info.register(task_info.TaskInfo(name, kind, tuple(label_names)))
  splits = dict(splits or {"train": "train", "validation": "validation"})
  source = TfdsSource(tfds_name=tfds_name, splits=splits)
  choice_fields = tuple(choice_fields)
  if (kind == "multiple_choice") != bool(choice_fields) or len(choice_fields) == 1:
    raise ValueError(f"task {name!r}: a multiple_choice task needs >= 2 choice_fields (and only it takes them)")
  convert = functools.partial(_from_tfds, text_fields=tuple(text_fields), label_field=label_field,
                              kind=kind, score_scale=float(score_scale), task_name=name,
                              choice_fields=choice_fields)
  pairs.check_format(pair_format, f"task {name!r}")
  text_fields = tuple(text_fields)
  if choice_fields:
    tokenize = functools.partial(_tokenize_choices, vocabulary=vocabulary, num_slots=len(choice_fields))
    finish = functools.partial(_pack_choices, vocabulary=vocabulary, num_slots=len(choice_fields))
  elif len(text_fields) > 1:
    tokenize = functools.partial(_tokenize_texts, vocabulary=vocabulary, num_texts=len(text_fields))
    finish = functools.partial(_pack, vocabulary=vocabulary, text_fields=text_fields, pair_format=pair_format)
  else:
    tokenize = functools.partial(_tokenize_text, vocabulary=vocabulary)
    finish = seqio.preprocessors.append_eos_after_trim
  preprocessors = [functools.partial(_map, fn=convert), functools.partial(_map, fn=tokenize), finish]
  return _register(name, source, preprocessors, vocabulary, metric_fns, info.kind)


def _map(ds, fn):
  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def add_mixture(name: str, tasks_and_rates: Sequence) -> seqio.Mixture:
  """Registers (or replaces) a seqio.Mixture; rates may be numbers or mtl_jax.input.mixing functions."""
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, tasks_and_rates)
