"""An offline SentencePiece vocabulary trained from the task text on first use, and the
run's vocabulary (that one, or a pretrained checkpoint's tokenizer when the run sets one).

No pretrained vocabulary ships with the offline corpora, so we train one (unigram,
T5 id convention: pad=0, eos=1, unk=2, no bos) from the training split text and
cache the model file. Training is deterministic (one thread, whole corpus, fixed
order), so every machine builds the same vocabulary from the same text.

RunVocabulary lets one registered task set serve both kinds of run: its tasks are
defined once, and each call asks which vocabulary the current run uses
(`pretrained.checkpoint` in gin; datasets are built after gin is parsed).
"""

from __future__ import annotations

import io
import os
import pathlib
import tempfile
import threading
from typing import Callable, Iterable

import seqio

_LOCK = threading.Lock()


def train_sentencepiece(texts: Iterable[str], model_path: pathlib.Path, vocab_size: int) -> None:
  """Trains a unigram SentencePiece model on `texts` and writes it atomically."""
  import sentencepiece as spm  # local import: only needed when (re)building

  model_path.parent.mkdir(parents=True, exist_ok=True)
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(list(texts)),
      model_writer=buf,
      vocab_size=vocab_size,
      model_type="unigram",
      character_coverage=1.0,
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
      input_sentence_size=0,
      shuffle_input_sentence=False,
      num_threads=1,
      hard_vocab_limit=False,
      minloglevel=2,
  )
  fd, tmp = tempfile.mkstemp(dir=model_path.parent, suffix=".tmp")
  with os.fdopen(fd, "wb") as f:
    f.write(buf.getvalue())
  os.replace(tmp, model_path)


class TrainedSentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """A seqio SentencePieceVocabulary whose model is trained from text if missing."""

  def __init__(self, model_path: str | os.PathLike, texts_fn: Callable[[], Iterable[str]],
               vocab_size: int):
    super().__init__(str(model_path))
    self._texts_fn = texts_fn
    self._target_size = vocab_size

  def _model_context(self):
    path = pathlib.Path(self.sentencepiece_model_file)
    if not path.exists():
      with _LOCK:
        if not path.exists():
          train_sentencepiece(self._texts_fn(), path, self._target_size)
    return super()._model_context()

  def __getstate__(self):
    state = super().__getstate__()
    state.pop("_texts_fn", None)
    return state


class RunVocabulary(seqio.Vocabulary):
  """The current run's vocabulary: `pretrained.checkpoint`'s tokenizer when gin sets one, else
  `default`. Every method and property delegates, resolved at call time (see `resolve`)."""

  def __init__(self, default: seqio.Vocabulary):
    super().__init__(extra_ids=0)
    self._default = default

  @property
  def default(self) -> seqio.Vocabulary:
    return self._default

  def resolve(self) -> seqio.Vocabulary:
    from mtl_jax.pretrained import settings, store, tokenizer  # local: keeps vocab.py light
    checkpoint = settings.current().checkpoint
    if checkpoint is None:
      return self._default
    return tokenizer.vocabulary_for(store.resolve(checkpoint))

  @property
  def add_bos(self) -> bool:
    return bool(getattr(self.resolve(), "add_bos", False))

  @property
  def bos_id(self):
    return self.resolve().bos_id

  @property
  def eos_id(self):
    return self.resolve().eos_id

  @property
  def pad_id(self) -> int:
    return self.resolve().pad_id

  @property
  def unk_id(self):
    return self.resolve().unk_id

  @property
  def extra_ids(self) -> int:
    return self.resolve().extra_ids

  @property
  def vocab_size(self) -> int:
    return self.resolve().vocab_size

  @property
  def _base_vocab_size(self) -> int:
    return self.resolve()._base_vocab_size  # pylint: disable=protected-access

  def encode(self, s):
    return self.resolve().encode(s)

  def decode(self, ids):
    return self.resolve().decode(ids)

  def encode_tf(self, s):
    return self.resolve().encode_tf(s)

  def decode_tf(self, ids):
    return self.resolve().decode_tf(ids)

  def _encode(self, s):
    return self.resolve()._encode(s)  # pylint: disable=protected-access

  def _decode(self, ids):
    return self.resolve()._decode(ids)  # pylint: disable=protected-access

  def _encode_tf(self, s):
    return self.resolve()._encode_tf(s)  # pylint: disable=protected-access

  def _decode_tf(self, ids):
    return self.resolve()._decode_tf(ids)  # pylint: disable=protected-access

  def __getattr__(self, name):
    """Anything else the resolved vocabulary has (e.g. sentencepiece_model_file)."""
    if name.startswith("_"):  # unpickling / copy probe private names before __dict__ is set
      raise AttributeError(name)
    return getattr(self.resolve(), name)

  def __getstate__(self):
    return {"_default": self._default, "_extra_ids": 0}

  def __setstate__(self, state):
    self.__dict__.update(state)

  def __eq__(self, other) -> bool:
    return isinstance(other, RunVocabulary) and other._default == self._default

  def __hash__(self) -> int:
    return hash(("RunVocabulary", type(self._default)))

  def __str__(self) -> str:
    return f"RunVocabulary(default={self._default})"
