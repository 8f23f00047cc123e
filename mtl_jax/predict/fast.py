"""mtl-predict without TensorFlow / seqio: the run's model from its manifest (mtl_jax/predict/manifest.py).

Why: a two-line predict spent ~60 % of its ~11 CPU-s importing TensorFlow and seqio and running each
task's tf.data pipeline once. For a task the manifest marks `fast` (one text, classification, regression
or tagging, a SentencePiece / `tokenizers` vocabulary) the features are built here in numpy, exactly as
the seqio pipeline builds them (tasks/registration.py: `[bos] + encode(text)` (tagging: each word on its
own, its tag on its first piece), append_eos_after_trim cuts to length - 1 and appends EOS, EOS tagged
-1; mtl_jax/input/features.py pads to the length, tags -1, token types 0).
Only the gin bindings of the modules that shape the model are parsed (config.gin's task and trainer
modules are not imported: `skip_unknown`). Any other task still goes through the full pipeline, set up
on first use (`Predictor.features`).
"""

from __future__ import annotations

import importlib
import re
from typing import Mapping, Sequence

import numpy as np


class Tokenizer:
  """One manifest vocabulary as the Python library reads its file."""

  def __init__(self, vocab: Mapping):
    self.add_bos, self.bos_id, self.eos_id = vocab["add_bos"], vocab["bos_id"], int(vocab["eos_id"])
    if vocab["type"] == "sentencepiece":
      import sentencepiece
      processor = sentencepiece.SentencePieceProcessor(model_file=vocab["path"])
      self.encode = processor.EncodeAsIds
      self.encode_words = lambda words: [list(processor.EncodeAsIds(w)) for w in words]  # tf_text per word
    else:
      from tokenizers import Tokenizer as HFTokenizer
      tok = HFTokenizer.from_file(vocab["path"])
      tok.no_truncation()
      tok.no_padding()
      self.encode = lambda s: tok.encode(s, add_special_tokens=False).ids

      def encode_words(words):  # TokenizersVocabulary._encode_words: HF is_split_into_words
        if not words:
          return []
        enc = tok.encode(list(words), is_pretokenized=True, add_special_tokens=False)
        out = [[] for _ in words]
        for piece, word in zip(enc.ids, enc.word_ids):
          out[word].append(piece)
        return out
      self.encode_words = encode_words


class Featurizer:
  """Model features [N, ...] of plain-text examples of the manifest's fast tasks."""

  def __init__(self, manifest: Mapping, task_names: Sequence[str], feature_lengths: Mapping[str, int]):
    self.specs = manifest["task_specs"]
    self.task_names = tuple(task_names)
    self.length = int(feature_lengths["inputs"])
    self._tokenizers: dict = {}

  def supports(self, task: str) -> bool:
    return bool(self.specs.get(task, {}).get("fast"))

  def _tokenizer(self, task: str) -> Tokenizer:
    vocab = self.specs[task]["vocabulary"]
    key = (vocab["type"], vocab["path"])
    if key not in self._tokenizers:
      self._tokenizers[key] = Tokenizer(vocab)
    return self._tokenizers[key]

  def ids(self, task: str, text: str) -> list[int]:
    """One example's input ids before padding (append_eos_after_trim on [bos] + pieces)."""
    tok = self._tokenizer(task)
    ids = ([tok.bos_id] if tok.add_bos else []) + list(tok.encode(text))
    return ids[:self.length - 1] + [tok.eos_id]

  def tagged(self, task: str, words: Sequence[str], word_tags: Sequence[int]) -> tuple[list[int], list[int]]:
    """A tagging example's ids and tags before padding (registration._tokenize_tagged, then
    append_eos_after_trim and _align_tags): each word's tag on its first piece, -1 on the others, on
    BOS and on EOS; a word with no piece is dropped."""
    tok = self._tokenizer(task)
    ids, tags = ([tok.bos_id], [-1]) if tok.add_bos else ([], [])
    for pieces, tag in zip(tok.encode_words(words), word_tags):
      ids += pieces
      tags += [int(tag)] + [-1] * (len(pieces) - 1) if pieces else []
    ids = ids[:self.length - 1] + [tok.eos_id]
    return ids, tags[:len(ids) - 1] + [-1]

  def __call__(self, task: str, examples: Sequence[Mapping]) -> dict[str, np.ndarray]:
    n, length = len(examples), self.length
    input_ids = np.zeros((n, length), np.int32)
    mask = np.zeros((n, length), np.int32)
    tags = np.full((n, length), -1, np.int32)
    for i, example in enumerate(examples):
      if self.specs[task]["kind"] == "tagging":
        ids, row_tags = self.tagged(task, example["tokens"], example["tags"])
        tags[i, :len(row_tags)] = row_tags
      else:
        ids = self.ids(task, example["text"])
      input_ids[i, :len(ids)], mask[i, :len(ids)] = ids, 1
    return {"input_ids": input_ids, "input_mask": mask,
            "task_id": np.full((n,), self.task_names.index(task), np.int32),
            "label": np.array([int(e.get("label", 0)) for e in examples], np.int32),
            "score": np.array([float(e.get("score", 0.0)) for e in examples], np.float32),
            "tags": tags, "weight": np.ones((n,), np.float32),
            "token_type_ids": np.zeros((n, length), np.int32)}


def file_specs(manifest: Mapping) -> dict:
  """The file tasks' specs (mtl_jax/data/file_tasks.py) as the run declared them, for predict's inputs."""
  from mtl_jax.data import file_tasks
  out = {}
  for name, task in manifest["task_specs"].items():
    fields = task.get("file_spec")
    if fields is not None:
      out[name] = file_tasks.FileTaskSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
  return out


def enable_compile_cache(min_compile_time_secs: float = 0.5) -> str | None:
  """jax's persistent compilation cache under MTL_JAX_CACHE/xla_predict for this process (the CLI's):
  the forward pass (~1-2 CPU-s to compile, the largest cost left once TensorFlow is not imported) is read
  back by the next predict of the same model. Programs compiling faster than `min_compile_time_secs`
  are not written (serialising the many tiny ones costs more than compiling them). A cache directory
  already configured for jax (JAX_COMPILATION_CACHE_DIR) is kept."""
  import jax
  from mtl_jax.data import fetch
  if jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir
  path = fetch.cache_dir() / "xla_predict"
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError:
    return None  # a read-only home: compile every time
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
  return str(path)


_IMPORT = re.compile(r"^\s*(import|from)\s")


def parse_model_config(config_text: str, manifest: Mapping) -> None:
  """This process's gin config := config.gin's bindings of the modules that shape the model; the task,
  data and trainer modules are neither imported nor bound (their bindings are skipped)."""
  import gin
  for module in _model_modules(manifest):
    importlib.import_module(module)
  for module in _foreign_imports(config_text):  # a trusted user module (--trust_config) may register a
    try:                                         # strategy or head the model needs: run it, as the full path does
      importlib.import_module(module)
    except ModuleNotFoundError:
      importlib.import_module(module.rpartition(".")[0])
  gin.clear_config()
  text = "\n".join(line for line in config_text.splitlines() if not _IMPORT.match(line))
  gin.parse_config(text, skip_unknown=True)


def _foreign_imports(config_text: str) -> list[str]:
  """config.gin's imports outside this project's packages (only read once config_trust allowed them)."""
  from mtl_jax.predict import config_trust
  out = []
  for line in config_text.splitlines():
    m = re.match(r"^\s*(?:import\s+([\w.]+)|from\s+([\w.]+)\s+import\s+(\w+))", line)
    if m and not config_trust.allowed(m.group(1) or m.group(2)):
      out.append(m.group(1) or f"{m.group(2)}.{m.group(3)}")  # from a import b: a.b (or a, b not a module)
  return out


def _model_modules(manifest: Mapping) -> list[str]:
  from mtl_jax.predict import manifest as manifest_lib
  return manifest_lib.model_modules(manifest)
