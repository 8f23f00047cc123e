"""An offline SentencePiece vocabulary trained from the task text on first use.

No pretrained vocabulary ships with the offline corpora, so we train one (unigram,
T5 id convention: pad=0, eos=1, unk=2, no bos) from the training split text and
cache the model file. Training is deterministic (one thread, whole corpus, fixed
order), so every machine builds the same vocabulary from the same text.
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
