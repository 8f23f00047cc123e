"""Read an HF-layout checkpoint directory (config.json + *.safetensors) without torch.

Supported model_type: 'bert' (BERT, MiniLM and other BERT-layout models), 'roberta',
'xlm-roberta' (RoBERTa layout: positions start at padding_idx + 1, one token type), 'electra'
(the discriminator or generator encoder; embeddings_project when embedding_size != hidden_size),
't5' (the encoder of T5 v1.0 / v1.1 / Flan, mt5-style checkpoints of model_type t5), 'deberta-v2'
(DeBERTa-v2 / v3: relative attention with p2c + c2p and shared keys, no conv layer), 'modernbert'
(no biases, default RoPE, a global layer every n-th from layer 0, sliding-window local layers).
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

MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "t5", "deberta-v2", "modernbert")
_T5_FF = {"relu": ("relu", False, True), "gated-gelu": ("gelu", True, False), "gelu": ("gelu", False, True),
          "gated-relu": ("relu", True, True)}  # feed_forward_proj -> (activation, gated, erf GELU)
_ROBERTA = ("roberta", "xlm-roberta")  # positions start at pad_token_id + 1
_GELU = {"gelu": True, "gelu_new": False, "gelu_pytorch_tanh": False}  # -> erf (exact) GELU?
_PREFIXES = ("", "bert.", "roberta.", "electra.", "deberta.", "model.")
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
    """sentence-transformers models say how they pool (1_Pooling/config.json); BERT's own is [CLS],
    T5's encoder has no [CLS]: the mean (as sentence-T5)."""
    pooling_file = self.path / "1_Pooling" / "config.json"
    if pooling_file.is_file():
      mode = json.loads(pooling_file.read_text())
      if mode.get("pooling_mode_mean_tokens"):
        return "mean"
      if mode.get("pooling_mode_cls_token"):
        return "cls"
    return "mean" if self.model_type == "t5" else "cls"

  def encoder_config(self, dropout_rate: float | None = None, pooling: str | None = None) -> EncoderConfig:
    c = self.config
    if self.model_type == "t5":
      return self._t5_config(dropout_rate, pooling)
    if self.model_type == "deberta-v2":
      return self._deberta_config(dropout_rate, pooling)
    if self.model_type == "modernbert":
      return self._modernbert_config(dropout_rate, pooling)
    offset = c.get("pad_token_id", 1) + 1 if self.model_type in _ROBERTA else 0
    embed_dim = int(c.get("embedding_size", c["hidden_size"]))
    return EncoderConfig(
        model_type="electra" if self.model_type == "electra" else "bert",
        embed_dim=embed_dim if embed_dim != c["hidden_size"] else 0,
        d_model=c["hidden_size"], num_heads=c["num_attention_heads"], mlp_dim=c["intermediate_size"],
        num_layers=c["num_hidden_layers"], max_len=c["max_position_embeddings"] - offset,
        dropout_rate=float(c.get("hidden_dropout_prob", 0.1) if dropout_rate is None else dropout_rate),
        vocab_size=c["vocab_size"], norm="post", gelu_exact=_GELU[c.get("hidden_act", "gelu")],
        layer_norm_eps=float(c.get("layer_norm_eps", 1e-12)), type_vocab_size=int(c.get("type_vocab_size", 0)),
        embed_norm=True, position_offset=offset, pooling=pooling or self.pooling())

  def _t5_config(self, dropout_rate, pooling) -> EncoderConfig:
    c = self.config
    act, gated, exact = _T5_FF[c.get("feed_forward_proj", "relu")]
    d, heads, d_kv = c["d_model"], c["num_heads"], c["d_kv"]
    return EncoderConfig(
        model_type="t5", d_model=d, num_heads=heads, kv_dim=0 if d_kv * heads == d else d_kv, mlp_dim=c["d_ff"],
        num_layers=c["num_layers"], max_len=int(c.get("n_positions", 512)),
        dropout_rate=float(c.get("dropout_rate", 0.1) if dropout_rate is None else dropout_rate),
        vocab_size=c["vocab_size"], norm="post", gelu_exact=exact, mlp_activation=act, mlp_gated=gated,
        layer_norm_eps=float(c.get("layer_norm_epsilon", 1e-6)),
        relative_buckets=int(c.get("relative_attention_num_buckets", 32)),
        relative_max_distance=int(c.get("relative_attention_max_distance", 128)), pooling=pooling or self.pooling())

  def _deberta_config(self, dropout_rate, pooling) -> EncoderConfig:
    c = self.config
    d, heads = c["hidden_size"], c["num_attention_heads"]
    head = int(c.get("attention_head_size", d // heads))
    embed = int(c.get("embedding_size", d))
    max_rel = int(c.get("max_relative_positions", -1))
    return EncoderConfig(
        model_type="deberta-v2", d_model=d, num_heads=heads, kv_dim=0 if head * heads == d else head,
        mlp_dim=c["intermediate_size"], num_layers=c["num_hidden_layers"], max_len=c["max_position_embeddings"],
        dropout_rate=float(c.get("hidden_dropout_prob", 0.1) if dropout_rate is None else dropout_rate),
        vocab_size=c["vocab_size"], norm="post", gelu_exact=_GELU[c.get("hidden_act", "gelu")],
        layer_norm_eps=float(c.get("layer_norm_eps", 1e-7)), type_vocab_size=int(c.get("type_vocab_size", 0)),
        embed_norm=True, embed_dim=embed if embed != d else 0,
        relative_buckets=max(int(c.get("position_buckets", -1)), 0),
        relative_max_distance=max_rel if max_rel >= 1 else c["max_position_embeddings"],
        pooling=pooling or self.pooling())

  def _modernbert_config(self, dropout_rate, pooling) -> EncoderConfig:
    c = self.config
    thetas = _modernbert_thetas(c)
    return EncoderConfig(
        model_type="modernbert", d_model=c["hidden_size"], num_heads=c["num_attention_heads"],
        mlp_dim=c["intermediate_size"], num_layers=c["num_hidden_layers"], max_len=c["max_position_embeddings"],
        dropout_rate=float(c.get("attention_dropout", 0.0) if dropout_rate is None else dropout_rate),
        vocab_size=c["vocab_size"], norm="post", gelu_exact=_GELU[c.get("hidden_activation", "gelu")],
        layer_norm_eps=float(c.get("norm_eps", 1e-5)), embed_norm=True, rope_theta=thetas[0],
        rope_theta_local=thetas[1], sliding_window=int(c.get("local_attention", 128)) // 2,
        global_every=_modernbert_every(str(self.path), c),
        pooling=pooling or ("mean" if c.get("classifier_pooling") == "mean" else self.pooling()))

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
    if self.model_type == "t5" and "shared.weight" not in raw and "encoder.embed_tokens.weight" in raw:
      raw["shared.weight"] = raw["encoder.embed_tokens.weight"]  # the tied copy a save may keep instead
    first = {"t5": "shared.weight", "modernbert": "embeddings.tok_embeddings.weight"}.get(
        self.model_type, "embeddings.word_embeddings.weight")
    prefix = next((p for p in _PREFIXES if f"{p}{first}" in raw), None)
    if prefix is None and self.model_type == "t5":
      raise ValueError(f"checkpoint {self.path}: no 'shared.weight' (or 'encoder.embed_tokens.weight') tensor; "
                       "is it a T5 checkpoint?")
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


_DEBERTA_NEEDS = {  # the DeBERTa-v2 / v3 attention variant mtl_jax/models/deberta.py implements
    "relative_attention": (True, False), "share_att_key": (True, False), "position_biased_input": (False, True),
    "conv_kernel_size": (0, 0), "norm_rel_ebd": ("layer_norm", "none")}  # field: (needed, HF's default)


def _check_deberta(path: str, config: dict) -> None:
  att = config.get("pos_att_type") or []
  att = sorted(a.strip() for a in (att.lower().split("|") if isinstance(att, str) else att))
  if att != ["c2p", "p2c"]:
    raise ValueError(f"pretrained checkpoint {path!r}: DeBERTa pos_att_type {att} is not supported; supported: "
                     "['p2c', 'c2p'] (DeBERTa-v2 / v3)")
  for field, (needed, default) in _DEBERTA_NEEDS.items():
    value = config.get(field, default)
    if field == "norm_rel_ebd":
      value = "|".join(sorted(v.strip() for v in str(value).lower().split("|")))
    if value != needed:
      raise ValueError(f"pretrained checkpoint {path!r}: DeBERTa attention variant {field}={value!r} is not "
                       f"supported; supported: {field}={needed!r} (DeBERTa-v2 / v3 without the conv layer)")


def _modernbert_thetas(c: dict) -> tuple[float, float]:
  rope = c.get("rope_parameters") or {}
  glob = rope.get("full_attention", {}).get("rope_theta", c.get("global_rope_theta") or 160000.0)
  local = rope.get("sliding_attention", {}).get("rope_theta", c.get("local_rope_theta") or glob)
  return float(glob), float(local)


def _modernbert_every(path: str, c: dict) -> int:
  """The n of 'every n-th layer from 0 is global' that layer_types (or global_attn_every_n_layers) spells."""
  layers = c["num_hidden_layers"]
  types = c.get("layer_types")
  if not types:
    return int(c.get("global_attn_every_n_layers", 3))
  for n in range(1, layers + 1):
    if list(types) == ["sliding_attention" if i % n else "full_attention" for i in range(layers)]:
      return n
  raise ValueError(f"pretrained checkpoint {path!r}: ModernBERT layer_types {list(types)} is not supported; "
                   "supported: full_attention on every n-th layer from layer 0, sliding_attention elsewhere")


def _check_modernbert(path: str, config: dict) -> None:
  for field in ("norm_bias", "attention_bias", "mlp_bias"):
    if config.get(field, False):
      raise ValueError(f"pretrained checkpoint {path!r}: ModernBERT {field}=True is not supported; supported: "
                       f"{field}=False (as every released ModernBERT)")
  for kind, params in (config.get("rope_parameters") or {}).items():
    if params.get("rope_type", "default") != "default":
      raise ValueError(f"pretrained checkpoint {path!r}: ModernBERT rope_type {params['rope_type']!r} ({kind}) is "
                       "not supported; supported: 'default'")
  _modernbert_every(path, config)


def hf_fields(config: EncoderConfig) -> dict:
  """The config.json fields that describe the trunk, for the layouts other than BERT / ELECTRA
  (export.hf_config writes them over the source's config.json): the inverse of encoder_config."""
  if config.model_type == "deberta-v2":
    return {"model_type": "deberta-v2", "architectures": ["DebertaV2Model"], "hidden_size": config.d_model,
            "num_attention_heads": config.num_heads, "attention_head_size": config.head_dim,
            "intermediate_size": config.mlp_dim, "num_hidden_layers": config.num_layers,
            "vocab_size": config.vocab_size, "max_position_embeddings": config.max_len,
            "hidden_act": "gelu" if config.gelu_exact else "gelu_new", "layer_norm_eps": config.layer_norm_eps,
            "type_vocab_size": config.type_vocab_size, "embedding_size": config.embed_dim or config.d_model,
            "position_buckets": config.relative_buckets or -1, "max_relative_positions": config.relative_max_distance,
            "hidden_dropout_prob": config.dropout_rate, "attention_probs_dropout_prob": config.dropout_rate,
            "pos_att_type": ["p2c", "c2p"], **{k: v[0] for k, v in _DEBERTA_NEEDS.items()}}
  if config.model_type == "modernbert":
    return {"model_type": "modernbert", "architectures": ["ModernBertModel"], "hidden_size": config.d_model,
            "num_attention_heads": config.num_heads, "intermediate_size": config.mlp_dim,
            "num_hidden_layers": config.num_layers, "vocab_size": config.vocab_size,
            "max_position_embeddings": config.max_len, "hidden_activation": "gelu" if config.gelu_exact else "gelu_new",
            "norm_eps": config.layer_norm_eps, "norm_bias": False, "attention_bias": False, "mlp_bias": False,
            "local_attention": 2 * config.sliding_window,
            "layer_types": ["sliding_attention" if i % config.global_every else "full_attention"
                            for i in range(config.num_layers)],
            "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": config.rope_theta},
                                "sliding_attention": {"rope_type": "default", "rope_theta": config.rope_theta_local}},
            "attention_dropout": config.dropout_rate, "mlp_dropout": config.dropout_rate,
            "embedding_dropout": config.dropout_rate}
  if config.model_type != "t5":
    raise ValueError(f"no HF config fields for model_type {config.model_type!r}")
  ff = next(k for k, v in _T5_FF.items() if v == (config.mlp_activation, config.mlp_gated, config.gelu_exact)
            or (config.mlp_activation == "relu" and v[:2] == ("relu", config.mlp_gated)))
  return {"model_type": "t5", "architectures": ["T5EncoderModel"], "d_model": config.d_model,
          "num_heads": config.num_heads, "d_kv": config.head_dim, "d_ff": config.mlp_dim,
          "num_layers": config.num_layers, "vocab_size": config.vocab_size, "feed_forward_proj": ff,
          "dropout_rate": config.dropout_rate, "layer_norm_epsilon": config.layer_norm_eps,
          "relative_attention_num_buckets": config.relative_buckets,
          "relative_attention_max_distance": config.relative_max_distance,
          "is_encoder_decoder": False, "use_cache": False}


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
  if model_type == "t5":
    ff = config.get("feed_forward_proj", "relu")
    if ff not in _T5_FF:
      raise ValueError(f"pretrained checkpoint {str(path)!r}: feed_forward_proj {ff!r} is not supported; "
                       f"supported: {', '.join(_T5_FF)}")
  if model_type == "deberta-v2":
    _check_deberta(str(path), config)
  if model_type == "modernbert":
    _check_modernbert(str(path), config)
  act = config.get("hidden_activation" if model_type == "modernbert" else "hidden_act", "gelu")
  if model_type != "t5" and act not in _GELU:
    raise ValueError(f"pretrained checkpoint {str(path)!r}: hidden_act {act!r} is not supported; "
                     f"supported: {', '.join(_GELU)}")
  if model_type != "t5" and config.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"pretrained checkpoint {str(path)!r}: position_embedding_type "
                     f"{config['position_embedding_type']!r} is not supported; only 'absolute'")
  if not (path / WEIGHTS).is_file() and not (path / INDEX).is_file():
    extra = " (only pytorch_model.bin: convert it to safetensors)" if (path / "pytorch_model.bin").exists() else ""
    raise ValueError(f"pretrained checkpoint {str(path)!r} has no {WEIGHTS}{extra}")
  return Checkpoint(path, config)
