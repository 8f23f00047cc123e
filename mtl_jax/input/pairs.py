"""Several texts -> one input, as the encoder was pretrained on them (pairs) or T5-joined.

Why: a BERT-family trunk was pretrained on `[CLS] a [SEP] b [SEP]` with segment (token type)
embeddings 0 / 1, RoBERTa / XLM-R on `<s> a </s></s> b </s>`; a pair fed as one joined text
with every token type 0 is not what they learned. And whichever the format, cutting the end of
the input drops the second text when the first is long, so both formats truncate the longer
text first and keep tokens of both.

  native  two texts: `layout.prefix a layout.middle b layout.suffix`; token types 0 up to the
          middle, `layout.type_b` after it; truncation HF tokenizers' LongestFirst
          (tokenizers/src/utils/truncation.rs), so ids and type ids equal
          `tokenizer(a, b, truncation=True, max_length=L)`.
  join    any number of texts, T5 style 'f1: t1 f2: t2 ...' (field names are not cut; the texts
          are cut longest first, water-filling), BOS (if the vocabulary has one) + EOS, type 0.

The layout comes from the vocabulary (`pair_layout()` -> (prefix, middle, suffix, type_b));
a vocabulary without one (the from-scratch SentencePiece) gets `a </s> b </s>`, types 0 / 1
(its EOS is the separator; the encoder's segment embeddings need EncoderConfig.type_vocab_size
= 2, gin/models/segments.gin).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import tensorflow as tf

FORMATS = ("native", "join")


@dataclasses.dataclass(frozen=True)
class PairLayout:
  prefix: tuple[int, ...]
  middle: tuple[int, ...]
  suffix: tuple[int, ...]
  type_b: int = 1

  @property
  def num_specials(self) -> int:
    return len(self.prefix) + len(self.middle) + len(self.suffix)


def check_format(pair_format: str, where: str) -> str:
  if pair_format not in FORMATS:
    raise ValueError(f"{where}: pair_format {pair_format!r} is not one of {', '.join(FORMATS)}")
  return pair_format


def layout_for(vocabulary) -> PairLayout:
  """The pair layout of the vocabulary the run uses (RunVocabulary resolves first)."""
  vocab = vocabulary.resolve() if hasattr(vocabulary, "resolve") else vocabulary
  own = getattr(vocab, "pair_layout", None)
  if own is not None:
    prefix, middle, suffix, type_b = own()
    return PairLayout(tuple(prefix), tuple(middle), tuple(suffix), int(type_b))
  return PairLayout((), (vocab.eos_id,), (vocab.eos_id,), 1)


def longest_first(na, nb, budget):
  """Kept lengths (ka, kb) of a pair under HF's LongestFirst with `budget` = max_length - specials.

  Assuming n1 <= n2: nothing is cut if n1 + n2 fits; else the longer keeps max(n1, budget - n1)
  and if that still does not fit both keep half (the longer one the odd token; equal: the second).
  """
  na, nb, budget = (tf.cast(x, tf.int32) for x in (na, nb, budget))
  swap = na > nb
  n1, n2 = tf.minimum(na, nb), tf.maximum(na, nb)
  cap2 = tf.where(n1 > budget, n1, tf.maximum(n1, budget - n1))
  both = n1 + cap2 > budget
  cap1 = tf.where(both, budget // 2, n1)
  cap2 = tf.where(both, budget // 2 + budget % 2, cap2)
  ka, kb = tf.where(swap, cap2, cap1), tf.where(swap, cap1, cap2)
  fits = na + nb <= budget
  return tf.where(fits, na, tf.minimum(na, ka)), tf.where(fits, nb, tf.minimum(nb, kb))


def water_fill(lengths, budget):
  """Kept lengths [k] cutting the longest texts first: the largest cap c with sum(min(n, c)) <= budget,
  then one more token to the last texts still longer than c while the budget lasts."""
  n = tf.cast(lengths, tf.int32)
  budget = tf.maximum(tf.cast(budget, tf.int32), 0)
  caps = tf.range(tf.reduce_max(n) + 1)
  used = tf.reduce_sum(tf.minimum(n[None, :], caps[:, None]), axis=1)
  c = tf.reduce_max(tf.boolean_mask(caps, used <= budget))
  kept = tf.minimum(n, c)
  longer = tf.cast(n > c, tf.int32)
  rank_from_end = tf.reverse(tf.cumsum(tf.reverse(longer, [0])), [0])  # 1 = the last longer text
  extra = tf.cast((longer > 0) & (rank_from_end <= budget - tf.reduce_sum(kept)), tf.int32)
  return tf.where(tf.reduce_sum(n) <= budget, n, kept + extra)


def native(a, b, layout: PairLayout, length: int | None, b_empty=False):
  """(ids, token_type) of the pair: HF's layout and truncation (length None: no truncation).

  `b_empty` (the second text is the empty string): one sequence `prefix a suffix`, as HF's
  `tokenizer(a, '')` gives (transformers passes a falsy text_pair as no pair)."""
  a, b = tf.cast(a, tf.int32), tf.cast(b, tf.int32)

  def single():
    cut = a if length is None else a[:max(length - len(layout.prefix) - len(layout.suffix), 0)]
    ids = tf.concat([tf.constant(layout.prefix, tf.int32, [len(layout.prefix)]), cut,
                     tf.constant(layout.suffix, tf.int32, [len(layout.suffix)])], 0)
    return ids, tf.zeros_like(ids)

  if isinstance(b_empty, bool):
    return single() if b_empty else _pair(a, b, layout, length)
  return tf.cond(tf.convert_to_tensor(b_empty), single, lambda: _pair(a, b, layout, length))


def _pair(a, b, layout: PairLayout, length: int | None):
  if length is not None:
    ka, kb = longest_first(tf.size(a), tf.size(b), max(length - layout.num_specials, 0))
    a, b = a[:ka], b[:kb]
  first = tf.concat([tf.constant(layout.prefix, tf.int32, [len(layout.prefix)]), a,
                     tf.constant(layout.middle, tf.int32, [len(layout.middle)])], 0)
  second = tf.concat([b, tf.constant(layout.suffix, tf.int32, [len(layout.suffix)])], 0)
  types = tf.concat([tf.zeros_like(first), tf.fill(tf.shape(second), layout.type_b)], 0)
  return tf.concat([first, second], 0), types


def joined(names: Sequence[tf.Tensor], texts: Sequence[tf.Tensor], bos, eos: int, length: int | None):
  """(ids, token_type) of 'name_1 text_1 name_2 text_2 ...' + EOS, texts cut longest first."""
  texts = [tf.cast(t, tf.int32) for t in texts]
  names = [tf.cast(t, tf.int32) for t in names]
  bos = tf.constant(list(bos), tf.int32, [len(bos)])
  if length is not None:
    fixed = tf.size(bos) + 1 + tf.add_n([tf.size(n) for n in names])
    kept = water_fill(tf.stack([tf.size(t) for t in texts]), length - fixed)
    texts = [t[:kept[i]] for i, t in enumerate(texts)]
  parts = [bos]
  for name, text in zip(names, texts):
    parts += [name, text]
  ids = tf.concat(parts + [tf.constant([eos], tf.int32)], 0)
  if length is not None:
    ids = ids[:length]  # only when the field names alone overflow
  return ids, tf.zeros_like(ids)
