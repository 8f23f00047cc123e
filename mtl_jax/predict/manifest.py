"""What mtl-predict needs to featurize plain inputs without TensorFlow / seqio, saved beside the run.

Why: rebuilding a run from config.gin imports its task modules, hence seqio and TensorFlow (~5-7 CPU-s
of a ~11 CPU-s two-line predict), and runs each task's tf.data pipeline. For the common tasks (one
text, classification / regression / tagging, from `tasks.registration.add_task`: offline and file tasks) that
pipeline is `[bos] + encode(text)`, cut to length - 1, + EOS, padded (tagging: each word encoded on
its own, its tag on its first piece): a few lines of numpy given the
vocabulary file, which the `sentencepiece` / `tokenizers` libraries read directly. This file records,
while the full config is live (training writes MODEL_DIR/predict_manifest.json; a predict that had to
take the full path caches one under MTL_JAX_CACHE), each task's kind, labels, input fields and
vocabulary, plus the modules whose gin bindings shape the model. It is trusted only while config.gin,
run_spec.json and the vocabulary file hash as recorded; otherwise predict takes the full path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import tempfile

FILENAME = "predict_manifest.json"
VERSION = 1
# Modules whose gin bindings only feed data, training or evaluation (never the forward pass): not
# imported by the fast path (tasks.* and the input pipeline import TensorFlow).
DATA_ONLY = ("tasks", "mtl_jax.input", "mtl_jax.data", "mtl_jax.run", "mtl_jax.step.evaluation",
             "mtl_jax.step.optim", "mtl_jax.step.metrics", "mtl_jax.compare", "mtl_jax.predict",
             "mtl_jax.trainer", "mtl_jax.optim")


def _sha256(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _fingerprint(model_dir: pathlib.Path) -> dict:
  return {"config_sha256": _sha256(model_dir / "config.gin"), "run_spec_sha256": _sha256(model_dir / "run_spec.json")}


# ------------------------------------------------------------------ building (full config live)

def _vocabulary(vocab) -> dict:
  """The vocabulary as files the Python tokenizer libraries read, or {'unsupported': why}."""
  import seqio
  vocab = vocab.resolve() if hasattr(vocab, "resolve") else vocab
  kind = type(vocab).__name__
  if (isinstance(vocab, seqio.SentencePieceVocabulary) and kind in ("SentencePieceVocabulary",
                                                                     "TrainedSentencePieceVocabulary")
      and vocab.extra_ids == 0 and getattr(vocab, "_normalizer_spec_overrides", None) is None
      and not getattr(vocab, "_use_fast_tokenizer", False)):  # encode_tf = the model file's own encoding
    kind, path = "sentencepiece", pathlib.Path(vocab.sentencepiece_model_file)
  elif kind == "TokenizersVocabulary" and type(vocab).__module__ == "mtl_jax.pretrained.tokenizer":
    kind, path = "tokenizers", pathlib.Path(vocab.tokenizer_file)  # its encode_tf runs the Python tokenizer
  else:
    return {"unsupported": f"vocabulary {kind} is not read by the fast path"}
  if not path.is_file():
    return {"unsupported": f"vocabulary file {path} is missing"}
  return {"type": kind, "path": str(path.absolute()), "sha256": _sha256(path),
          "add_bos": bool(getattr(vocab, "add_bos", False)), "bos_id": getattr(vocab, "bos_id", None),
          "eos_id": int(vocab.eos_id)}


def _task(name: str) -> dict:
  """One task's entry: kind, labels, its file spec (file tasks), and `fast` (or `unsupported`)."""
  import seqio
  from mtl_jax.input import task_info
  from tasks import registration
  info = task_info.get(name)
  entry = {"kind": info.kind, "label_names": list(info.label_names)}
  try:
    from tasks import from_files
    spec = from_files.SPECS.get(name)
  except ImportError:
    spec = None
  if spec is not None:
    entry["file_spec"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(spec).items()}
  task = seqio.get_mixture_or_task(name)
  if not isinstance(task, seqio.Task) or not isinstance(task.source, registration.InMemorySource):
    return {**entry, "unsupported": "not an add_task task"}
  if info.kind not in ("classification", "regression", "tagging"):
    return {**entry, "unsupported": f"{info.kind} inputs take the full pipeline"}
  steps = list(task.preprocessors)
  if info.kind == "tagging":  # append_eos_after_trim, then _align_tags (tags shifted onto the trimmed input)
    tail = steps[1:]
    if len(tail) != 1 or getattr(tail[0], "keywords", {}).get("fn") is not registration._align_tags:  # pylint: disable=protected-access
      return {**entry, "unsupported": "a tagging pipeline other than registration.add_task's"}
    steps = steps[:1]
  if steps != [seqio.preprocessors.append_eos_after_trim]:
    return {**entry, "unsupported": "several text fields (pairs) take the full pipeline"}
  vocabulary = _vocabulary(task.output_features["inputs"].vocabulary)
  if "unsupported" in vocabulary:
    return {**entry, "unsupported": vocabulary["unsupported"]}
  return {**entry, "vocabulary": vocabulary, "fast": True}


def build(model_dir, task_names, feature_lengths) -> dict:
  """The manifest of the run in `model_dir` as the live gin config and task registry describe it."""
  from gin import config as gin_config
  model_dir = pathlib.Path(model_dir)
  modules = set()
  for _, selector in gin_config._CONFIG:  # pylint: disable=protected-access
    found = gin_config._REGISTRY.get_match(selector)  # pylint: disable=protected-access
    module = getattr(getattr(found, "wrapped", None), "__module__", None)
    if module and module != "gin.config":
      modules.add(module)
  return {"version": VERSION, **_fingerprint(model_dir), "tasks": list(task_names),
          "feature_lengths": dict(feature_lengths), "gin_modules": sorted(modules),
          "task_specs": {name: _task(name) for name in task_names}}


def write(model_dir, task_names, feature_lengths, path=None) -> pathlib.Path | None:
  """Writes the manifest (atomically) to `path` (default MODEL_DIR/predict_manifest.json). Never fails
  the caller: a manifest that cannot be built or written only means predict takes the full path."""
  model_dir = pathlib.Path(model_dir)
  path = pathlib.Path(path) if path else model_dir / FILENAME
  try:
    text = json.dumps(build(model_dir, task_names, feature_lengths), indent=1, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.replace(tmp, path)
    return path
  except Exception:  # pylint: disable=broad-except
    return None


# ------------------------------------------------------------------ reading (no TF, no seqio)

def cache_path(model_dir) -> pathlib.Path:
  """Where a full-path predict caches the manifest of a run that has none (keyed by its files)."""
  from mtl_jax.data import fetch
  fp = _fingerprint(pathlib.Path(model_dir))
  return fetch.cache_dir() / "predict_manifests" / f"{fp['config_sha256'][:20]}_{fp['run_spec_sha256'][:20]}.json"


def read(model_dir) -> dict | None:
  """The run's manifest if one matches its current config.gin / run_spec.json / vocabulary files, else None."""
  model_dir = pathlib.Path(model_dir)
  try:
    fingerprint = _fingerprint(model_dir)
  except OSError:
    return None
  for path in (model_dir / FILENAME, cache_path(model_dir)):
    try:
      manifest = json.loads(path.read_text())
    except (OSError, ValueError):
      continue
    if manifest.get("version") != VERSION or any(manifest.get(k) != v for k, v in fingerprint.items()):
      continue
    if all(_vocabulary_intact(t.get("vocabulary")) for t in manifest["task_specs"].values() if t.get("fast")):
      return manifest
  return None


_CHECKED: dict = {}


def _vocabulary_intact(vocab: dict | None) -> bool:
  if not vocab:
    return False
  key = (vocab["path"], vocab["sha256"])
  if key not in _CHECKED:
    try:
      _CHECKED[key] = _sha256(pathlib.Path(vocab["path"])) == vocab["sha256"]
    except OSError:
      _CHECKED[key] = False
  return _CHECKED[key]


def model_modules(manifest: dict) -> list[str]:
  """The bound configurables' modules the forward pass may read (everything but DATA_ONLY)."""
  return [m for m in manifest["gin_modules"]
          if not any(m == root or m.startswith(root + ".") for root in DATA_ONLY)]
