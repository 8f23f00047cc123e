"""The tokenizer of a SentencePiece checkpoint (T5, DeBERTa-v2 / v3) as a seqio Vocabulary.

Why two routes (tokenizer.vocabulary_for picks): checkpoints that ship tokenizer.json (HF's fast
tokenizer, converted from the SentencePiece model) are run by `tokenizers` (tokenizer.TokenizersVocabulary:
T5 `pieces </s>`, DeBERTa `[CLS] pieces [SEP]`); those with only the SentencePiece model (T5 spiece.model, DeBERTa-v3
spm.model as on the hub) by seqio's SentencePieceVocabulary, in-graph as t5x does, with the
specials HF's tokenizer puts around a text. Known limit of the spm-only route: a special token
written literally in the text ('[SEP]') is split as text (HF's added-token matching is not applied).
"""

from __future__ import annotations

import pathlib

import seqio

SPM_FILE = {"t5": "spiece.model", "deberta-v2": "spm.model"}


class T5SentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """seqio's SentencePieceVocabulary with the specials HF's T5 tokenizer puts around texts."""

  @property
  def add_bos(self) -> bool:
    return False

  def pair_layout(self):
    """HF's T5 pair template `a </s> b </s>`, one token type (mtl_jax/input/pairs.py)."""
    return (), (self.eos_id,), (self.eos_id,), 0


class DebertaSentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """seqio's SentencePieceVocabulary with DeBERTa's specials: [CLS] pieces [SEP], pad [PAD]."""

  def _piece(self, piece: str) -> int:
    i = self.tokenizer.piece_to_id(piece)
    if i == self.tokenizer.unk_id() and piece != "[UNK]":
      raise ValueError(f"{self.sentencepiece_model_file}: no {piece} piece; not a DeBERTa-v2 / v3 spm.model")
    return i

  @property
  def add_bos(self) -> bool:
    return True

  @property
  def bos_id(self) -> int:
    return self._piece("[CLS]")

  @property
  def eos_id(self) -> int:
    return self._piece("[SEP]")

  @property
  def pad_id(self) -> int:
    return self._piece("[PAD]")

  def pair_layout(self):
    """HF's DeBERTa pair template `[CLS] a [SEP] b [SEP]`, type 1 from b on (mtl_jax/input/pairs.py)."""
    return (self.bos_id,), (self.eos_id,), (self.eos_id,), 1


_SPM_CLASS = {"t5": T5SentencePieceVocabulary, "deberta-v2": DebertaSentencePieceVocabulary}


def vocabulary(directory: pathlib.Path, model_type: str) -> seqio.Vocabulary:
  """The spm-only route (tokenizer.py takes tokenizer.json first, through TokenizersVocabulary)."""
  spm_file = directory / SPM_FILE[model_type]
  if spm_file.is_file():
    return _SPM_CLASS[model_type](str(spm_file))
  raise ValueError(f"pretrained checkpoint {str(directory)!r} has neither tokenizer.json nor {spm_file.name}; "
                   "the tokenizer needs one (an HF-layout directory ships it next to config.json)")
