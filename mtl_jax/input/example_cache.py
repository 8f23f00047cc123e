"""Tokenized examples cached on disk, so the next cell of a grid reads them instead of tokenizing.

Why: every grid cell is a fresh process that tokenizes the same splits again (SentencePiece or WordPiece
in tf.data: ~5 s of a tiny quickstart cell on 2 cores). The cache sits where in-memory tasks tokenize
(tasks/registration.py `_dataset_fn`: one split, in file order, before any shuffle), so a cached split
is the very same dataset and every later step (the seeded per-epoch permutation, packing, batching)
gives the same batches byte for byte.

Key: task, split, the tokenizing recipe (kind, slots, the source of the tokenize function's module),
the vocabulary (class, its model / vocab files' sha256, its settings) and the task's data fingerprint
(run/data_fingerprint.py, what run_spec.json records): changed data, another tokenizer or edited
tokenization code is another file. The input length is not part of it: tokenization does not trim
(seqio trims later), so one entry serves every TASK_FEATURE_LENGTHS.

Files: `<grid cache>/examples/<task>.<split>.<key>.npz`, one array per feature (variable-length
features as flat values + lengths), written to a temporary file and renamed, so a reader never sees a
half-written file and two cells racing both write whole files (the last rename wins; same contents).
An unreadable or mismatching file is ignored (rebuilt). Tasks without a data fingerprint, features of
rank >= 2, or a cache dir that is not writable (one warning line): tokenized as before.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import pathlib
import tempfile
import zipfile
from typing import Callable

import numpy as np
import tensorflow as tf

from mtl_jax import file_modes
from mtl_jax.run import grid_cache

FORMAT = 1  # bump when the file layout changes
_VOCAB_FILES = ("sentencepiece_model_file", "vocab_file", "tokenizer_file")
_VOCAB_SETTINGS = ("do_lower_case", "tokenize_chinese_chars", "strip_accents", "max_input_chars_per_word",
                   "add_bos", "bos_id", "eos_id", "pad_id", "unk_id", "vocab_size", "extra_ids")


def _file_sha(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _plain(value, depth: int = 0) -> bool:
  """JSON-able plain data (what identifies a vocabulary without files: a word list, flags, ids)."""
  if isinstance(value, (bool, int, float, str, type(None))):
    return True
  if depth < 3 and isinstance(value, (list, tuple)):
    return all(_plain(v, depth + 1) for v in value)
  if depth < 3 and isinstance(value, dict):
    return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
  return False


def vocabulary_fingerprint(vocabulary) -> str:
  """What fixes a vocabulary's ids: its class, its model / vocab files' contents, its settings and its
  plain-data attributes (e.g. a word list)."""
  resolved = vocabulary.resolve() if hasattr(vocabulary, "resolve") else vocabulary
  parts = {"class": f"{type(resolved).__module__}.{type(resolved).__qualname__}"}
  for name in _VOCAB_FILES:
    path = getattr(resolved, name, None)
    if isinstance(path, str) and os.path.isfile(path):
      parts[name] = _file_sha(path)
  for name in _VOCAB_SETTINGS:
    try:
      value = getattr(resolved, name, None)
    except Exception:  # pylint: disable=broad-except  (a property a vocabulary does not support)
      value = None
    parts[name] = value if _plain(value) else repr(value)
  parts["attributes"] = {k: v for k, v in sorted(vars(resolved).items()) if _plain(v)}
  return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _recipe_source(tokenize: Callable) -> str:
  """The tokenize function's name and its whole module's source (its helpers may change too)."""
  fn = getattr(tokenize, "func", tokenize)  # functools.partial
  keywords = json.dumps(getattr(tokenize, "keywords", {}), sort_keys=True, default=type)
  try:
    return fn.__qualname__ + keywords + pathlib.Path(inspect.getsourcefile(fn)).read_text()
  except (OSError, TypeError, AttributeError):
    return getattr(fn, "__qualname__", repr(fn)) + keywords


def cache_key(task_name: str, split: str, recipe: dict, vocabulary, data_fingerprint: str,
              tokenize: Callable) -> str:
  parts = {"format": FORMAT, "task": task_name, "split": split, "recipe": recipe,
           "vocabulary": vocabulary_fingerprint(vocabulary), "data": data_fingerprint,
           "code": hashlib.sha256(_recipe_source(tokenize).encode()).hexdigest()}
  return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _spec_of(element_spec) -> dict | None:
  """{feature: [dtype, shape]} of a dict of dense tensors of rank <= 1, or None (not cacheable)."""
  if not isinstance(element_spec, dict):
    return None
  out = {}
  for name, spec in element_spec.items():
    if not isinstance(spec, tf.TensorSpec) or spec.shape.rank is None or spec.shape.rank > 1:
      return None
    out[name] = [spec.dtype.name, [d for d in spec.shape.as_list()]]
  return out


def _arrays(ds: tf.data.Dataset, spec: dict) -> dict[str, np.ndarray]:
  """Every element of `ds` as columns: fixed shapes stacked, [None] features as values + lengths."""
  columns = {name: [] for name in spec}
  for element in ds.as_numpy_iterator():
    for name in spec:
      columns[name].append(element[name])
  out = {}
  for name, (dtype, shape) in spec.items():
    values = columns[name]
    np_dtype = np.dtype(object) if dtype == "string" else tf.dtypes.as_dtype(dtype).as_numpy_dtype
    if shape and shape[0] is None:
      out[f"{name}.lengths"] = np.asarray([len(v) for v in values], np.int64)
      flat = np.concatenate(values) if values else np.zeros([0], np_dtype)
      out[f"{name}.values"] = flat.astype(np_dtype) if dtype != "string" else np.asarray(flat, dtype=bytes)
    else:
      stacked = np.stack(values) if values else np.zeros([0, *shape], np_dtype)
      out[f"{name}.values"] = np.asarray(stacked, dtype=bytes) if dtype == "string" else stacked
  return out


def _dataset(arrays: dict, spec: dict) -> tf.data.Dataset:
  """The cached columns as the same dataset: same feature names, dtypes and static shapes."""
  fixed, ragged = {}, {}
  for name, (dtype, shape) in spec.items():
    values = tf.constant(arrays[f"{name}.values"], dtype=tf.dtypes.as_dtype(dtype))
    if shape and shape[0] is None:
      ragged[name] = tf.RaggedTensor.from_row_lengths(values, arrays[f"{name}.lengths"])
    else:
      fixed[name] = values
  ds = tf.data.Dataset.from_tensor_slices({**fixed, **ragged})
  return ds.map(lambda e: {name: tf.identity(e[name]) for name in spec})  # ragged rank-0 -> dense [None]


def _write(path: pathlib.Path, arrays: dict, spec: dict) -> None:
  buf = io.BytesIO()
  np.savez(buf, __spec__=np.frombuffer(json.dumps(spec).encode(), np.uint8), **arrays)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(buf.getvalue())
    os.chmod(tmp, 0o666 & ~file_modes.umask())  # mkstemp's 0600 -> the usual mode, readable by collaborators
    os.replace(tmp, path)  # atomic: readers see the old file, none, or the whole new one
  except BaseException:
    try:
      os.unlink(tmp)
    except OSError:
      pass
    raise


def _read(path: pathlib.Path) -> tuple[dict, dict] | None:
  """(arrays, spec) of a cache file, or None when it is missing, truncated or not ours (then rebuilt)."""
  try:
    with np.load(path, allow_pickle=False) as data:
      spec = json.loads(bytes(data["__spec__"]).decode())
      arrays = {k: data[k] for k in data.files if k != "__spec__"}
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
    return None
  return (arrays, spec) if all(f"{n}.values" in arrays for n in spec) else None


def tokenized(build: Callable[[], tf.data.Dataset], *, task_name: str, split: str, recipe: dict,
              vocabulary, tokenize: Callable) -> tf.data.Dataset:
  """`build()` (the split tokenized in file order), from the grid cache when it holds it; written there
  on first use. Without a usable cache dir or data fingerprint: `build()` unchanged. A hit never calls
  `build()` (tracing the tokenizer alone costs ~0.2 s a split)."""
  root = grid_cache.usable("examples")
  if root is None:
    return build()
  from mtl_jax.run import data_fingerprint  # local: data_fingerprint imports the input pipeline
  fingerprint = data_fingerprint.task_fingerprint(task_name)
  if fingerprint is None:
    return build()
  key = cache_key(task_name, split, recipe, vocabulary, fingerprint, tokenize)
  path = root / f"{task_name}.{split}.{key}.npz"
  found = _read(path)
  if found is not None:
    return _dataset(*found)
  ds = build()
  spec = _spec_of(ds.element_spec)
  if spec is None:
    return ds
  arrays = _arrays(ds, spec)
  try:
    _write(path, arrays, spec)
  except OSError as e:
    print(f"mtl_jax: WARNING: could not write the example cache {str(path)!r} ({e.strerror or e}); "
          "continuing without it", flush=True)
  return _dataset(arrays, spec)
