"""A pretrained checkpoint's tokenizer as a seqio Vocabulary (ids exactly as HF gives them).

Why: a pretrained trunk only means something with its own token ids, and seqio
preprocessors tokenize inside tf.data. Two classes:

  WordPieceVocabulary   BERT / MiniLM (vocab.txt + tokenizer_config.json). In-graph:
                        HF's BertNormalizer (clean_text, CJK spacing, NFD accent strip,
                        lowercase) as TF string ops, HF's BertPreTokenizer as a
                        tensorflow-text regex split, tensorflow-text FastWordpieceTokenizer,
                        and HF's special-token matching on the raw text ('[SEP]' in the
                        text is the id 102, as HF's added-token split gives).
  TokenizersVocabulary  RoBERTa / XLM-R (tokenizer.json: byte-level BPE or unigram), run by
                        the HF `tokenizers` library itself (off-graph, tf.py_function).

`encode` gives pieces only; the pipeline adds the specials: `add_bos` / `bos_id`
([CLS] or <s>) in tasks/registration.py, `eos_id` ([SEP] or </s>) by seqio's
append_eos_after_trim, so a text becomes HF's `[CLS] pieces [SEP]`.

Known limit of the in-graph WordPiece path: TF's Unicode tables (RE2 / ICU) are not
the ones compiled into `tokenizers`, so characters whose category or case mapping
changed between Unicode versions (marks and letters of rarely written scripts, 568
of 1.1M code points with tokenizers 0.23 / TF 2.21) may tokenize differently.
Latin, Greek, Cyrillic, CJK, punctuation, symbols and emoji agree.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import threading

import numpy as np
import seqio
import tensorflow as tf

_MODEL_TYPES = {"bert": "wordpiece", "electra": "wordpiece", "roberta": "tokenizers", "xlm-roberta": "tokenizers",
                "t5": "sentencepiece", "deberta-v2": "sentencepiece", "modernbert": "tokenizers"}

# HF BertNormalizer / BertPreTokenizer as RE2 classes (tokenizers/src/normalizers/bert.rs)
_CONTROL = r"[^\t\n\r\P{Cc}]|\p{Cf}|\p{Co}|\x{FFFD}"  # removed (clean_text)
_WHITESPACE = r"[\t\n\r\p{Z}]"  # -> ' ' (clean_text)
_CJK = (r"([\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
        r"\x{2B740}-\x{2B81F}\x{2B920}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}])")
_PUNCT = r"[!-/:-@\[-`{-~]|\p{P}"  # ASCII punctuation or Unicode P* (isolated by the pre-tokenizer)
_SPLIT = r"[\t\n\r \p{Z}]+|" + _PUNCT


def _read_json(path: pathlib.Path) -> dict:
  return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _require(directory: pathlib.Path, name: str) -> pathlib.Path:
  path = directory / name
  if not path.is_file():
    raise ValueError(f"pretrained checkpoint {str(directory)!r} has no {name}; "
                     f"the tokenizer needs it (an HF-layout directory ships it next to config.json)")
  return path


def _token(value, default: str) -> str:
  """special_tokens_map / tokenizer_config values are a string or {'content': ...}."""
  if isinstance(value, dict):
    value = value.get("content")
  return value if isinstance(value, str) else default


def _ragged_encode(encode_batch, s: tf.Tensor) -> tf.Tensor:
  """Runs `encode_batch(1-D strings) -> RaggedTensor [n, pieces]` on a scalar or a 1-D tensor."""
  s = tf.convert_to_tensor(s, tf.string)
  if s.shape.rank == 0:
    return encode_batch(tf.reshape(s, [1])).flat_values
  if s.shape.rank == 1:
    return encode_batch(s)
  raise ValueError(f"encode_tf takes a scalar string or a 1-D tensor of words, got shape {s.shape}")


class WordPieceVocabulary(seqio.Vocabulary):
  """BERT-style lower-cased (or cased) WordPiece, tokenizing in-graph like HF's fast tokenizer."""

  def __init__(self, vocab_file, *, do_lower_case: bool = True, tokenize_chinese_chars: bool = True,
               strip_accents: bool | None = None, max_input_chars_per_word: int = 100,
               unk_token: str = "[UNK]", cls_token: str = "[CLS]", sep_token: str = "[SEP]",
               pad_token: str = "[PAD]", special_tokens=("[MASK]",)):
    super().__init__(extra_ids=0)
    self.vocab_file = str(vocab_file)
    self.do_lower_case = bool(do_lower_case)
    self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
    self.strip_accents = strip_accents
    self.max_input_chars_per_word = int(max_input_chars_per_word)
    self._tokens = [line.rstrip("\n") for line in
                    pathlib.Path(vocab_file).read_text(encoding="utf-8").split("\n")]
    if self._tokens and self._tokens[-1] == "":
      self._tokens.pop()  # the file's final newline
    self._ids = {t: i for i, t in enumerate(self._tokens)}
    named = {"unk_token": unk_token, "cls_token": cls_token, "sep_token": sep_token, "pad_token": pad_token}
    for role, tok in named.items():
      if tok not in self._ids:
        raise ValueError(f"{role} {tok!r} is not in {self.vocab_file}; fix tokenizer_config.json "
                         f"or special_tokens_map.json")
    self.unk_token, self.cls_token, self.sep_token, self.pad_token = unk_token, cls_token, sep_token, pad_token
    self.special_tokens = tuple(dict.fromkeys(
        [pad_token, unk_token, cls_token, sep_token] + [t for t in special_tokens if t in self._ids]))
    self._lock = threading.Lock()
    self._wordpiece = None
    self._encode_fn = None

  @classmethod
  def from_dir(cls, directory) -> "WordPieceVocabulary":
    """Settings as HF's BertTokenizerFast reads them: tokenizer_config.json wins over tokenizer.json."""
    directory = pathlib.Path(directory)
    vocab_file = _require(directory, "vocab.txt")
    config = _read_json(directory / "tokenizer_config.json")
    specials = {**config, **_read_json(directory / "special_tokens_map.json")}
    model = _read_json(directory / "tokenizer.json").get("model") or {}
    return cls(vocab_file,
               do_lower_case=config.get("do_lower_case", True),
               tokenize_chinese_chars=config.get("tokenize_chinese_chars", True),
               strip_accents=config.get("strip_accents"),
               max_input_chars_per_word=model.get("max_input_chars_per_word", 100),
               unk_token=_token(specials.get("unk_token"), "[UNK]"),
               cls_token=_token(specials.get("cls_token"), "[CLS]"),
               sep_token=_token(specials.get("sep_token"), "[SEP]"),
               pad_token=_token(specials.get("pad_token"), "[PAD]"),
               special_tokens=(_token(specials.get("mask_token"), "[MASK]"),))

  # ---------------------------------------------------------------- ids
  @property
  def add_bos(self) -> bool:
    return True

  @property
  def bos_id(self) -> int:
    return self._ids[self.cls_token]

  @property
  def eos_id(self) -> int:
    return self._ids[self.sep_token]

  @property
  def pad_id(self) -> int:
    return self._ids[self.pad_token]

  @property
  def unk_id(self) -> int:
    return self._ids[self.unk_token]

  def pair_layout(self):
    """`[CLS] a [SEP] b [SEP]`, token type 1 from b on (mtl_jax/input/pairs.py)."""
    return (self.bos_id,), (self.eos_id,), (self.eos_id,), 1

  @property
  def _base_vocab_size(self) -> int:
    return len(self._tokens)

  # ---------------------------------------------------------------- in-graph
  def _fast_wordpiece(self):
    import tensorflow_text as tf_text
    with self._lock:
      if self._wordpiece is None:
        # Built eagerly (init_scope) so its model is an eager constant any graph may capture:
        # the first call may come from inside a tf.data map. The byte limit never bites first:
        # HF's limit is in characters (<= 4 bytes each), checked in _encode_batch.
        with tf.init_scope():
          self._wordpiece = tf_text.FastWordpieceTokenizer(
              vocab=self._tokens, suffix_indicator="##", unknown_token=self.unk_token,
              max_bytes_per_word=4 * self.max_input_chars_per_word + 4, token_out_type=tf.int64,
              no_pretokenization=True)
      return self._wordpiece

  def _normalize(self, s: tf.Tensor) -> tf.Tensor:
    """HF BertNormalizer, in its order: clean, CJK spacing, strip accents, lowercase (per char)."""
    import tensorflow_text as tf_text
    s = tf.strings.regex_replace(s, _CONTROL, "")
    s = tf.strings.regex_replace(s, _WHITESPACE, " ")
    if self.tokenize_chinese_chars:
      s = tf.strings.regex_replace(s, _CJK, r" \1 ")
    strip = self.do_lower_case if self.strip_accents is None else self.strip_accents
    if strip:
      s = tf.strings.regex_replace(tf_text.normalize_utf8(s, "NFD"), r"\p{Mn}", "")
    if self.do_lower_case:
      # ICU lowercases a word-final capital sigma to final sigma; HF maps char by char.
      s = tf.strings.lower(tf.strings.regex_replace(s, "\u03a3", "\u03c3"), encoding="utf-8")
    return s

  def _encode_batch(self, texts: tf.Tensor) -> tf.RaggedTensor:
    """1-D strings -> ragged [n, pieces] int32 word-piece ids (no [CLS] / [SEP])."""
    import tensorflow_text as tf_text
    special = "|".join(_re_escape(t) for t in self.special_tokens)
    texts = tf.strings.regex_replace(texts, r"\x00", "\x01")  # regex_split stops at NUL; both are removed
    segments = tf_text.regex_split(texts, special, special)  # [n, segs]: HF splits added tokens first
    seg = segments.flat_values
    is_special = tf.strings.regex_full_match(seg, special)
    words = tf_text.regex_split(tf.where(is_special, "", self._normalize(seg)), _SPLIT, _PUNCT)
    kept = tf.RaggedTensor.from_row_lengths(tf.boolean_mask(seg, is_special),
                                            tf.cast(is_special, tf.int64))
    words = tf.concat([words, kept], axis=1)  # each row is one of the two: words or its special token
    flat = words.flat_values
    too_long = tf.strings.length(flat, unit="UTF8_CHAR") > self.max_input_chars_per_word
    flat = tf.where(too_long, self.unk_token, flat)  # HF: a word over the limit is one [UNK]
    pieces = self._fast_wordpiece().tokenize(flat)  # [words, pieces]
    nested = segments.with_flat_values(words.with_flat_values(pieces))  # [n, segs, words, pieces]
    return tf.cast(nested.merge_dims(1, 3), tf.int32)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    return _ragged_encode(self._encode_batch, s)

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    """Pieces joined by spaces, '##' glued, [PAD] / [CLS] / [SEP] dropped (HF's WordPiece
    decoder without its punctuation clean-up, which `decode` applies)."""
    ids = tf.convert_to_tensor(ids)
    keep = tf.reduce_all(tf.not_equal(ids[..., None], [self.pad_id, self.bos_id, self.eos_id]), -1)
    tokens = tf.ragged.boolean_mask(tf.gather(tf.constant(self._tokens), ids), keep)
    return tf.strings.regex_replace(tf.strings.reduce_join(tokens, axis=-1, separator=" "), " ##", "")

  # ---------------------------------------------------------------- python
  def _encode(self, s: str):
    with self._lock:
      if self._encode_fn is None:  # one trace, then ~50x faster than op-by-op eager calls
        self._encode_fn = tf.function(self._encode_batch, input_signature=[tf.TensorSpec([None], tf.string)])
    return self._encode_fn(tf.constant([s])).flat_values.numpy().tolist()

  def _decode(self, ids) -> str:
    from tokenizers import decoders
    drop = {self.pad_id, self.bos_id, self.eos_id}
    tokens = [self._tokens[i] for i in ids if i not in drop]
    return decoders.WordPiece(prefix="##", cleanup=True).decode(tokens)

  # ---------------------------------------------------------------- identity
  def __getstate__(self):
    state = dict(self.__dict__)
    state["_wordpiece"] = state["_encode_fn"] = None
    state.pop("_lock", None)
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def _key(self):
    return (self.vocab_file, self.do_lower_case, self.tokenize_chinese_chars, self.strip_accents,
            self.max_input_chars_per_word, self.special_tokens)

  def __eq__(self, other) -> bool:
    return isinstance(other, WordPieceVocabulary) and other._key() == self._key()

  def __hash__(self) -> int:
    return hash(("WordPieceVocabulary",) + self._key())

  def __str__(self) -> str:
    return f"WordPieceVocabulary({self.vocab_file!r}, lower={self.do_lower_case}, size={self.vocab_size})"


def _re_escape(text: str) -> str:
  """RE2-safe literal (Python's re.escape also escapes characters RE2 accepts unescaped)."""
  return "".join("\\" + c if c in r"\.^$|?*+()[]{}-" else c for c in text)


class TokenizersVocabulary(seqio.Vocabulary):
  """Any tokenizer.json (RoBERTa / XLM-R byte-level BPE or unigram) run by HF `tokenizers`.

  Off-graph: encode_tf is a tf.py_function. BOS / EOS are the tokens the tokenizer's
  post-processor puts around one sequence; truncation and padding in the file are ignored
  (seqio trims and the feature converter pads).
  """

  def __init__(self, tokenizer_file):
    super().__init__(extra_ids=0)
    self.tokenizer_file = str(tokenizer_file)
    self._tokenizer = None
    self._lock = threading.Lock()
    tok = self.tokenizer
    probe = "a"
    plain = tok.encode(probe, add_special_tokens=False).ids
    full = tok.encode(probe, add_special_tokens=True).ids
    starts = [k for k in range(len(full) - len(plain) + 1) if full[k:k + len(plain)] == plain]
    if not plain or not starts or starts[0] > 1 or len(full) - starts[0] - len(plain) != 1:
      raise ValueError(f"{self.tokenizer_file}: its post-processor must wrap a sequence as "
                       f"[bos] pieces eos (got {full} around {plain}); not a RoBERTa / XLM-R tokenizer")
    self._bos = full[0] if starts[0] == 1 else None
    self._eos = full[-1]
    pad = tok.token_to_id("<pad>")
    self._pad = 0 if pad is None else pad
    model = json.loads(pathlib.Path(self.tokenizer_file).read_text(encoding="utf-8")).get("model") or {}
    if model.get("type") == "Unigram":
      self._unk = model.get("unk_id")
    else:
      unk = model.get("unk_token")
      self._unk = tok.token_to_id(unk) if unk else None

  @property
  def tokenizer(self):
    with self._lock:
      if self._tokenizer is None:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(self.tokenizer_file)
        tok.no_truncation()
        tok.no_padding()
        self._tokenizer = tok
      return self._tokenizer

  @property
  def add_bos(self) -> bool:
    return self._bos is not None

  @property
  def bos_id(self):
    return self._bos

  @property
  def eos_id(self) -> int:
    return self._eos

  @property
  def pad_id(self) -> int:
    return self._pad

  @property
  def unk_id(self):
    return self._unk

  def pair_layout(self):
    """The post-processor's own pair template (RoBERTa: `<s> a </s></s> b </s>`, all type 0), read off
    an encoded pair: the special tokens before, between and after the two texts, and b's type."""
    enc = self.tokenizer.encode("a", "b", add_special_tokens=True)
    seq = list(enc.sequence_ids)
    first = [i for i, s in enumerate(seq) if s == 0]
    second = [i for i, s in enumerate(seq) if s == 1]
    if not first or not second or first[-1] > second[0]:
      raise ValueError(f"{self.tokenizer_file}: its post-processor has no pair template (a then b)")
    ids = enc.ids
    return (ids[:first[0]], ids[first[-1] + 1:second[0]], ids[second[-1] + 1:], enc.type_ids[second[0]])

  @property
  def _base_vocab_size(self) -> int:
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  def _encode(self, s: str):
    return self.tokenizer.encode(s, add_special_tokens=False).ids

  def _encode_words(self, words):
    """A pre-split list of words (HF is_split_into_words): ids and per-word piece counts."""
    if not words:
      return [], []
    enc = self.tokenizer.encode(list(words), is_pretokenized=True, add_special_tokens=False)
    counts = [0] * len(words)
    for w in enc.word_ids:
      counts[w] += 1
    return enc.ids, counts

  def _encode_batch(self, texts: tf.Tensor) -> tf.RaggedTensor:
    def run(t):
      values, lengths = [], []
      for s in t.numpy():
        ids = self._encode(s.decode("utf-8"))
        values += ids
        lengths.append(len(ids))
      return tf.constant(values, tf.int32), tf.constant(lengths, tf.int64)
    values, lengths = tf.py_function(run, [texts], (tf.int32, tf.int64))
    values.set_shape([None])
    lengths.set_shape(texts.shape)
    return tf.RaggedTensor.from_row_lengths(values, lengths)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    s = tf.convert_to_tensor(s, tf.string)
    if s.shape.rank != 1:
      return _ragged_encode(self._encode_batch, s)

    def run(t):
      ids, counts = self._encode_words([w.decode("utf-8") for w in t.numpy()])
      return tf.constant(ids, tf.int32), tf.constant(counts, tf.int64)
    values, lengths = tf.py_function(run, [s], (tf.int32, tf.int64))
    values.set_shape([None])
    lengths.set_shape(s.shape)
    return tf.RaggedTensor.from_row_lengths(values, lengths)

  def _decode(self, ids) -> str:
    drop = {self._pad, self._bos, self._eos}
    return self.tokenizer.decode([int(i) for i in ids if i not in drop], skip_special_tokens=False)

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    def run(t):
      arr = t.numpy()
      rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
      out = [self._decode(r.tolist()).encode("utf-8") for r in rows]
      return np.array(out, dtype=object).reshape(arr.shape[:-1])
    ids = tf.convert_to_tensor(ids)
    out = tf.py_function(run, [ids], tf.string)
    out.set_shape(ids.shape[:-1])
    return out

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_tokenizer"] = None
    state.pop("_lock", None)
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def __eq__(self, other) -> bool:
    return isinstance(other, TokenizersVocabulary) and other.tokenizer_file == self.tokenizer_file

  def __hash__(self) -> int:
    return hash(("TokenizersVocabulary", self.tokenizer_file))

  def __str__(self) -> str:
    return f"TokenizersVocabulary({self.tokenizer_file!r}, size={self.vocab_size})"


def vocabulary_for(checkpoint_dir) -> seqio.Vocabulary:
  """The checkpoint's tokenizer, chosen by config.json's model_type; one per directory."""
  return _vocabulary_for(str(pathlib.Path(os.fspath(checkpoint_dir)).expanduser().absolute()))


@functools.lru_cache(maxsize=None)
def _vocabulary_for(directory: str) -> seqio.Vocabulary:
  path = pathlib.Path(directory)
  config = json.loads(_require(path, "config.json").read_text(encoding="utf-8"))
  model_type = config.get("model_type")
  kind = _MODEL_TYPES.get(model_type)
  if kind is None:
    raise ValueError(f"pretrained checkpoint {directory!r}: unsupported model_type {model_type!r} in "
                     f"config.json; supported: {', '.join(sorted(_MODEL_TYPES))}")
  if kind == "wordpiece":
    return WordPieceVocabulary.from_dir(path)
  if kind == "sentencepiece" and not (path / "tokenizer.json").is_file():  # T5 / DeBERTa: the spm model alone
    from mtl_jax.pretrained import sentencepiece_vocab
    return sentencepiece_vocab.vocabulary(path, model_type)
  return TokenizersVocabulary(_require(path, "tokenizer.json"))
