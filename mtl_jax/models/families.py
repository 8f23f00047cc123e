"""Which embedder and layer a layout runs, chosen by `EncoderConfig.model_type` (the HF model_type).

Why one seam here: every sharing strategy builds its trunk from layers named `layer_{k}` via
`encoder.layer_module` (hard, soft towers, MMoE experts, sluice / cross-stitch columns) or
`peft_layer.run_trunk` (adapters, LoRA, AdapterFusion), and `MultiTaskModel` embeds with
`encoder.Embedder`; all of them ask this registry, so a new layout reaches every strategy (and the
`layer_{k}/` checkpoint path rule) without touching them. Layout modules register themselves
(mtl_jax/models/__init__.py imports them), so this module imports none of them: no import circle.

  bert, electra    encoder.TransformerLayer / peft_layer.PeftLayer and encoder.Embedder ('bert' is also the
                   from-scratch encoder and the RoBERTa / XLM-R layout; ELECTRA adds the embedding
                   projection, EncoderConfig.embed_dim)
  t5               mtl_jax/models/t5.py (encoder only)
  deberta-v2       mtl_jax/models/deberta.py (DeBERTa-v2 / v3)
  modernbert       mtl_jax/models/modernbert.py
"""

from __future__ import annotations

BERT_FAMILY = ("bert", "electra")
MODEL_TYPES = BERT_FAMILY + ("t5", "deberta-v2", "modernbert")
ACTIVATIONS = ("gelu", "relu")

_LAYOUTS: dict[str, dict] = {}


def register(model_type: str, **parts) -> None:
  """parts: layer (the layer class), peft_layer (the one taking `hooks`), embed (fn(embedder_module,
  input_ids, deterministic, token_type_ids) -> x; absent: encoder.Embedder's own), layer_inputs
  (fn(config, mask, length) -> what every layer gets as its mask argument; absent: the mask)."""
  _LAYOUTS.setdefault(model_type, {}).update(parts)


def check(config) -> None:
  if config.model_type not in MODEL_TYPES:
    raise ValueError(f"EncoderConfig.model_type {config.model_type!r} is not supported; "
                     f"supported: {', '.join(MODEL_TYPES)}")
  if isinstance(config.embed_dim, bool) or not isinstance(config.embed_dim, int) or config.embed_dim < 0:
    raise ValueError(f"EncoderConfig.embed_dim must be an int >= 0 (0: d_model), got {config.embed_dim!r}")
  if config.mlp_activation not in ACTIVATIONS:
    raise ValueError(f"EncoderConfig.mlp_activation {config.mlp_activation!r} is not supported; "
                     f"supported: {', '.join(ACTIVATIONS)}")
  if config.model_type in BERT_FAMILY:
    if (config.mlp_activation != "gelu" or config.mlp_gated or config.relative_buckets or config.kv_dim
        or config.rope_theta or config.sliding_window or config.global_every):
      raise ValueError(f"model_type {config.model_type!r} has a GELU MLP, absolute positions and "
                       "d_model / num_heads wide heads; mlp_activation / mlp_gated / relative_buckets / kv_dim "
                       "belong to model_type 't5' / 'deberta-v2' / 'modernbert'")
    return
  if config.norm != "post":
    raise ValueError(f"EncoderConfig.norm must be 'post' for model_type {config.model_type!r} (its layers carry "
                     f"their own norms), got {config.norm!r}")
  if config.scan_layers:
    raise ValueError(f"EncoderConfig.scan_layers=True is not supported for model_type {config.model_type!r}; "
                     "set it to False")
  if config.model_type == "deberta-v2" and not config.relative_max_distance > 0:
    raise ValueError(f"model_type 'deberta-v2' needs relative_max_distance > 0 (max_relative_positions), got "
                     f"{config.relative_max_distance}")
  if config.model_type == "modernbert" and not (config.global_every >= 1 and config.rope_theta > 0
                                                and config.rope_theta_local > 0 and config.sliding_window > 0):
    raise ValueError("model_type 'modernbert' needs global_every >= 1, rope_theta > 0, rope_theta_local > 0 and "
                     f"sliding_window > 0, got {config.global_every}, {config.rope_theta}, {config.rope_theta_local}, "
                     f"{config.sliding_window}")
  if config.model_type == "t5" and not (config.relative_buckets >= 4 and config.relative_max_distance > 0):
    raise ValueError(f"model_type 't5' needs relative_buckets >= 4 and relative_max_distance > 0, got "
                     f"{config.relative_buckets} and {config.relative_max_distance}")


def _part(config, name: str, default=None):
  return _LAYOUTS.get(config.model_type, {}).get(name, default)


def layer_class(config, peft: bool = False):
  """The layer module class; peft=True: the one taking `hooks` (adapters / LoRA seams)."""
  cls = _part(config, "peft_layer" if peft else "layer")
  if cls is None:
    raise ValueError(f"model_type {config.model_type!r} has no registered {'peft ' if peft else ''}layer; "
                     "import its module (mtl_jax/models/__init__.py imports every layout)")
  return cls


def layer_classes() -> tuple:
  """Every registered layer class, plain and peft (TaskEmb's interceptor finds a stack's layers by them)."""
  return tuple({cls: None for parts in _LAYOUTS.values() for key, cls in parts.items()
                if key in ("layer", "peft_layer")})


def embed_fn(config):
  """None: encoder.Embedder's own embeddings; else fn(embedder_module, input_ids, deterministic, token_type_ids)."""
  return _part(config, "embed")


def layer_inputs(config, mask, length: int):
  """What every layer of a stack gets as its `mask` argument. The BERT family: the mask itself; T5:
  (mask, the relative bias of the ONE table all layers share); DeBERTa-v2: (mask, its shared relative
  embeddings). The table is created in the calling module (the stack's owner: trunk, tower, columns),
  so call this inside that module's compact body."""
  fn = _part(config, "layer_inputs")
  return mask if fn is None else fn(config, mask, length)


class NoHooks:
  """The adapters / LoRA seams doing nothing (as sharing/peft_layer.Hooks): layouts outside the
  parameter-efficient strategies call their layers with hooks=None and get these."""

  def lora(self, name: str, x):  # noqa: ARG002
    return None

  def adapt(self, place: str, h):  # noqa: ARG002
    return h
