"""Which embedder and layer a layout runs, chosen by `EncoderConfig.model_type` (the HF model_type).

Why one seam here: every sharing strategy builds its trunk from layers named `layer_{k}` via
`encoder.layer_module` (hard, soft towers, MMoE experts, sluice / cross-stitch columns) or
`peft_layer.run_trunk` (adapters, LoRA, AdapterFusion), and `MultiTaskModel` embeds with
`encoder.Embedder`; both ask this module, so a new layout reaches every strategy (and the
`layer_{k}/` checkpoint path rule) without touching them.

  bert, electra    encoder.TransformerLayer / peft_layer.PeftLayer and encoder.Embedder ('bert' is also the
                   from-scratch encoder and the RoBERTa / XLM-R layout; ELECTRA adds the embedding
                   projection, EncoderConfig.embed_dim)
  t5               mtl_jax/models/t5.py (encoder only)
"""

from __future__ import annotations

BERT_FAMILY = ("bert", "electra")
MODEL_TYPES = BERT_FAMILY + ("t5",)
ACTIVATIONS = ("gelu", "relu")


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
    if config.mlp_activation != "gelu" or config.mlp_gated or config.relative_buckets or config.kv_dim:
      raise ValueError(f"model_type {config.model_type!r} has a GELU MLP, absolute positions and "
                       "d_model / num_heads wide heads; mlp_activation / mlp_gated / relative_buckets / kv_dim "
                       "belong to model_type 't5'")
    return
  if config.norm != "post":
    raise ValueError(f"EncoderConfig.norm must be 'post' for model_type {config.model_type!r} (its layers carry "
                     f"their own norms), got {config.norm!r}")
  if config.scan_layers:
    raise ValueError(f"EncoderConfig.scan_layers=True is not supported for model_type {config.model_type!r}; "
                     "set it to False")
  if config.model_type == "t5" and not (config.relative_buckets >= 4 and config.relative_max_distance > 0):
    raise ValueError(f"model_type 't5' needs relative_buckets >= 4 and relative_max_distance > 0, got "
                     f"{config.relative_buckets} and {config.relative_max_distance}")


def layer_class(config, peft: bool = False):
  """The layer module class; peft=True: the one taking `hooks` (adapters / LoRA seams)."""
  if config.model_type in BERT_FAMILY:
    if peft:
      from mtl_jax.sharing.peft_layer import PeftLayer
      return PeftLayer
    from mtl_jax.models.encoder import TransformerLayer
    return TransformerLayer
  from mtl_jax.models import t5
  return t5.T5Layer  # takes hooks=None outside the parameter-efficient strategies


def embed_fn(config):
  """None: encoder.Embedder's own embeddings; else fn(embedder_module, input_ids, deterministic) -> x."""
  if config.model_type in BERT_FAMILY:
    return None
  from mtl_jax.models import t5
  return t5.embed


def layer_inputs(config, mask, length: int):
  """What every layer of a stack gets as its `mask` argument. The BERT family: the mask itself; T5:
  (mask, the relative bias of the ONE table all layers share), the table created in the calling
  module (the stack's owner: trunk, tower, columns), so call it inside that module's compact body."""
  if config.model_type in BERT_FAMILY:
    return mask
  from mtl_jax.models import t5
  return t5.layer_inputs(config, mask, length)
