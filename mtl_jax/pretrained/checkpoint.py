"""Read an HF-layout checkpoint directory (config.json + *.safetensors) without torch.

Supported model_type: 'bert' (BERT, MiniLM and other BERT-layout models), 'roberta',
'xlm-roberta' (RoBERTa layout: positions start at padding_idx + 1, one token type).
`Checkpoint.encoder_config()` is the EncoderConfig that runs the weights exactly as
published (post-LN, erf GELU, token types, the config's LayerNorm eps);
`Checkpoint.params()` maps the tensors to our flat names (mtl_jax.pretrained.names).
Every problem (a missing file, an unsupported model_type or activation, a missing or
mis-shaped tensor) is one ValueError naming it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib

import numpy as np

from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.pretrained import names

MODEL_TYPES = ("bert", "roberta", "xlm-roberta")
_GELU = {"gelu": True, "gelu_new": False, "gelu_pytorch_tanh": False}  # -> erf (exact) GELU?
_PREFIXES = ("", "bert.", "roberta.", "model.")
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  path: pathlib.Path
  config: dict

  @property
  def model_type(self) -> str:
    return self.config["model_type"]

  def weight_files(self) -> list[pathlib.Path]:
    if (self.path / WEIGHTS).is_file():
      return [self.path / WEIGHTS]
    index = json.loads((self.path / INDEX).read_text())
    return [self.path / f for f in sorted(set(index["weight_map"].values()))]

  def sha256(self) -> str:
    """Digest of the weight file(s), recorded in run_spec.json (cached per file state)."""
    return _sha256(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in self.weight_files()))

  def pooling(self) -> str:
    """sentence-transformers models say how they pool (1_Pooling/config.json); BERT's own is [CLS]."""
    pooling_file = self.path / "1_Pooling" / "config.json"
    if pooling_file.is_file():
      mode = json.loads(pooling_file.read_text())
      if mode.get("pooling_mode_mean_tokens"):
        return "mean"
    return "cls"

  def encoder_config(self, dropout_rate: float | None = None, pooling: str | None = None) -> EncoderConfig:
    c = self.config
    offset = c.get("pad_token_id", 1) + 1 if self.model_type != "bert" else 0
    return EncoderConfig(
        d_model=c["hidden_size"], num_heads=c["num_attention_heads"], mlp_dim=c["intermediate_size"],
        num_layers=c["num_hidden_layers"], max_len=c["max_position_embeddings"] - offset,
        dropout_rate=float(c.get("hidden_dropout_prob", 0.1) if dropout_rate is None else dropout_rate),
        vocab_size=c["vocab_size"], norm="post", gelu_exact=_GELU[c.get("hidden_act", "gelu")],
        layer_norm_eps=float(c.get("layer_norm_eps", 1e-12)), type_vocab_size=int(c.get("type_vocab_size", 0)),
        embed_norm=True, position_offset=offset, pooling=pooling or self.pooling())

  def tensors(self) -> dict[str, np.ndarray]:
    """The raw tensors, names as stored."""
    from safetensors.numpy import load_file  # numpy only: no torch
    out = {}
    for f in self.weight_files():
      out.update(load_file(str(f)))
    return out

  def params(self) -> dict[str, np.ndarray]:
    """Our flat name -> float32 array for every encoder tensor (pooler / LM head ignored)."""
    raw = {names.normalise_hf_name(k): v for k, v in self.tensors().items()}
    prefix = next((p for p in _PREFIXES if f"{p}embeddings.word_embeddings.weight" in raw), None)
    if prefix is None:
      raise ValueError(f"checkpoint {self.path}: no 'embeddings.word_embeddings.weight' tensor (with or "
                       f"without a {'/'.join(p for p in _PREFIXES if p)} prefix); is it a BERT/RoBERTa encoder?")
    out = {}
    for e in names.table(self.encoder_config()):
      value = raw.get(prefix + e.hf)
      if value is None:
        raise ValueError(f"checkpoint {self.path}: tensor {prefix + e.hf!r} is missing")
      if tuple(value.shape) != e.shape:
        raise ValueError(f"checkpoint {self.path}: tensor {prefix + e.hf!r} has shape {tuple(value.shape)}, "
                         f"config.json implies {e.shape}")
      out[e.ours] = np.ascontiguousarray(e.to_ours(np.asarray(value, np.float32)))
    return out


def without_prefix(name: str) -> str:
  """'bert.pooler.dense.weight' -> 'pooler.dense.weight': a tensor's name inside the encoder."""
  return next(name[len(p):] for p in sorted(_PREFIXES, key=len, reverse=True) if name.startswith(p))


@functools.lru_cache(maxsize=8)
def _sha256(files: tuple) -> str:
  h = hashlib.sha256()
  for name, _, _ in files:
    with open(name, "rb") as f:
      for block in iter(lambda: f.read(1 << 22), b""):
        h.update(block)
  return h.hexdigest()


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
  """Validates the directory's files and config and returns the Checkpoint."""
  path = pathlib.Path(path)
  config_file = path / "config.json"
  if not config_file.is_file():
    raise ValueError(f"pretrained checkpoint {str(path)!r} has no config.json; point "
                     "pretrained.checkpoint at an HF-layout directory")
  config = json.loads(config_file.read_text())
  model_type = config.get("model_type")
  if model_type not in MODEL_TYPES:
    raise ValueError(f"pretrained checkpoint {str(path)!r}: model_type {model_type!r} is not supported; "
                     f"supported: {', '.join(MODEL_TYPES)}")
  act = config.get("hidden_act", "gelu")
  if act not in _GELU:
    raise ValueError(f"pretrained checkpoint {str(path)!r}: hidden_act {act!r} is not supported; "
                     f"supported: {', '.join(_GELU)}")
  if config.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"pretrained checkpoint {str(path)!r}: position_embedding_type "
                     f"{config['position_embedding_type']!r} is not supported; only 'absolute'")
  if not (path / WEIGHTS).is_file() and not (path / INDEX).is_file():
    extra = " (only pytorch_model.bin: convert it to safetensors)" if (path / "pytorch_model.bin").exists() else ""
    raise ValueError(f"pretrained checkpoint {str(path)!r} has no {WEIGHTS}{extra}")
  return Checkpoint(path, config)
