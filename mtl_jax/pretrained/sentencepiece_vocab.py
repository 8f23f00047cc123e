"""The tokenizer of a SentencePiece checkpoint (T5 and its kin) as a seqio Vocabulary.

Why two routes: hub T5 / Flan checkpoints ship tokenizer.json (HF's fast tokenizer, converted from
the SentencePiece model: run by `tokenizers`, tokenizer.TokenizersVocabulary, `pieces </s>`), older
and hand-made ones only spiece.model, which seqio's SentencePieceVocabulary runs in-graph as t5x
does (no BOS, EOS </s> appended by seqio: HF's `pieces </s>` again).
"""

from __future__ import annotations

import pathlib

import seqio

FILES = ("tokenizer.json", "spiece.model")


class T5SentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """seqio's SentencePieceVocabulary with the specials HF's T5 tokenizer puts around texts."""

  @property
  def add_bos(self) -> bool:
    return False

  def pair_layout(self):
    """HF's T5 pair template `a </s> b </s>`, one token type (mtl_jax/input/pairs.py)."""
    return (), (self.eos_id,), (self.eos_id,), 0


def vocabulary(directory: pathlib.Path) -> seqio.Vocabulary:
  if (directory / "tokenizer.json").is_file():
    from mtl_jax.pretrained.tokenizer import TokenizersVocabulary
    return TokenizersVocabulary(directory / "tokenizer.json")
  if (directory / "spiece.model").is_file():
    return T5SentencePieceVocabulary(str(directory / "spiece.model"))
  raise ValueError(f"pretrained checkpoint {str(directory)!r} has neither {' nor '.join(FILES)}; "
                   "the tokenizer needs one (an HF-layout directory ships it next to config.json)")
