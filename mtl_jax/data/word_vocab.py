"""A closed word-level vocabulary for the synthetic benchmark ('w0 w17 ...' text).

Why: the synthetic words are a closed set, so a SentencePiece model would only
re-learn them (and might split them); seqio's UnigramVocabulary already maps
space-separated words to ids in TF. We add the EOS id the encoder features need.

Ids: 0 = PAD, 1 = EOS ('</s>'), 2 + k = word 'w<k>', num_words + 2 = UNK.
"""

from __future__ import annotations

import seqio
import tensorflow as tf

EOS_PIECE = "</s>"


class WordVocabulary(seqio.UnigramVocabulary):
  """'w<k>' -> k + 2 for k < num_words; anything else -> UNK."""

  def __init__(self, num_words: int):
    if num_words < 1:
      raise ValueError(f"num_words={num_words} must be >= 1")
    self.num_words = int(num_words)
    super().__init__([EOS_PIECE] + [f"w{k}" for k in range(num_words)], split_on_space=True)

  @property
  def eos_id(self) -> int:
    return 1

  def _decode(self, ids) -> str:
    """Words only: PAD and EOS are dropped (as SentencePiece decoding does)."""
    return super()._decode([i for i in ids if i > 1])

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    return super()._decode_tf(tf.boolean_mask(ids, ids > 1))

  def __eq__(self, other) -> bool:
    return isinstance(other, WordVocabulary) and other.num_words == self.num_words

  def __hash__(self) -> int:
    return hash(("WordVocabulary", self.num_words))

  def __str__(self) -> str:
    return f"WordVocabulary(num_words={self.num_words})"
