"""Transformer encoder layers with logical axis names on every param.

Pre-LayerNorm (the from-scratch default) or post-LayerNorm (BERT / RoBERTa, so a
pretrained checkpoint runs exactly as published: see mtl_jax/pretrained/). Logical
axes (mapped to mesh axes by mtl_jax.scale.partitioning rules):
  vocab, embed, heads, kv, mlp, length (positions), tasks (per-task stacks).
Activations are constrained to ('batch', 'length', 'embed').

Scale options (all off by default; the default model is unchanged): `dtype` (bf16
activations and matmuls, see mtl_jax/scale/precision.py), `remat_policy` (per-layer
rematerialisation, mtl_jax/scale/remat.py) and `scan_layers` (one nn.scan over the layers:
compile time independent of depth; the params become one stack on a 'layers' axis
under layer_scan/, so pretrained / init_from loading, which reads layer_{k}/, refuses it).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import gin
import jax.numpy as jnp

from mtl_jax.models import families, segments
from mtl_jax.scale import precision, remat

_DENSE_INIT = nn.initializers.xavier_uniform()
NORMS = ("pre", "post")
POOLINGS = ("mean", "cls")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Size of the encoder; `vocab_size` is filled in from the task vocabulary."""

  d_model: int = 128
  num_heads: int = 4
  mlp_dim: int = 512
  num_layers: int = 2
  max_len: int = 512
  dropout_rate: float = 0.0
  vocab_size: int = 0
  # Architecture switches for pretrained checkpoints (defaults: the from-scratch encoder).
  norm: str = "pre"              # 'pre': x + f(LN(x)), final LN; 'post' (BERT): LN(x + f(x)), no final LN
                                 # (other model_types: 'post': their layers carry their own norms, the last the final)
  gelu_exact: bool = False       # erf GELU (BERT) instead of the tanh approximation
  layer_norm_eps: float = 1e-6
  type_vocab_size: int = 0       # > 0: token-type (segment) embeddings, every token type 0
  embed_norm: bool = False       # LayerNorm + dropout after the embedding sum (BERT)
  position_offset: int = 0       # first position id (RoBERTa: padding_idx + 1 = 2)
  pooling: str = "mean"          # sequence heads read the masked 'mean' or the first ('cls') token
  model_type: str = "bert"       # the layout: embedder + layer (mtl_jax/models/families.py; RoBERTa is 'bert')
  embed_dim: int = 0             # > 0: embeddings of this width projected to d_model (ELECTRA's embedding_size)
  kv_dim: int = 0                # > 0: per-head width when not d_model / num_heads (T5's d_kv)
  mlp_activation: str = "gelu"   # 'gelu' (erf or tanh per gelu_exact) or 'relu' (T5 v1.0)
  mlp_gated: bool = False        # act(x W0) * (x W1) feed-forward (T5 v1.1 / Flan gated-GELU)
  relative_buckets: int = 0      # relative-position buckets (T5); 0: none
  relative_max_distance: int = 0 # distance from which buckets are logarithmic (T5's relative_attention_max_distance)
  rope_theta: float = 0.0        # > 0: rotary positions with this base (ModernBERT's global layers)
  rope_theta_local: float = 0.0  # rotary base of the sliding-window layers (ModernBERT)
  sliding_window: int = 0        # > 0: local layers attend to |query - key| <= this (ModernBERT: local_attention / 2)
  global_every: int = 0          # layer k attends globally when k % global_every == 0, else locally (ModernBERT)
  # Memory / precision / compile time at scale (README "Precision, memory and speed").
  dtype: str = "float32"         # activations + matmuls: 'float32' or 'bfloat16' (softmax, LayerNorm, losses stay f32)
  param_dtype: str = "float32"   # parameters, gradients, optimizer state
  remat_policy: str = "none"     # per-layer rematerialisation: mtl_jax/scale/remat.py POLICIES
  scan_layers: bool = False      # nn.scan the layer stack (params stacked on 'layers'; no pretrained loading)

  def __post_init__(self):
    for field in ("d_model", "num_heads", "mlp_dim", "num_layers", "max_len"):
      value = getattr(self, field)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f"EncoderConfig.{field} must be a positive int, got {value!r}")
    if self.d_model % self.num_heads and not self.kv_dim:
      raise ValueError(
          f"EncoderConfig.d_model={self.d_model} is not divisible by num_heads={self.num_heads}; "
          "pick num_heads dividing d_model")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"EncoderConfig.dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
    for field, allowed in (("norm", NORMS), ("pooling", POOLINGS)):
      if getattr(self, field) not in allowed:
        raise ValueError(f"EncoderConfig.{field} must be one of {allowed}, got {getattr(self, field)!r}")
    if not self.layer_norm_eps > 0:
      raise ValueError(f"EncoderConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
    families.check(self)
    precision.check("dtype", self.dtype)
    precision.check("param_dtype", self.param_dtype)
    remat.check(self.remat_policy)
    if not isinstance(self.scan_layers, bool):
      raise ValueError(f"EncoderConfig.scan_layers must be True or False, got {self.scan_layers!r}")

  @property
  def head_dim(self) -> int:
    return self.kv_dim or self.d_model // self.num_heads

  @property
  def compute_dtype(self):
    return precision.dtype(self.dtype)

  @property
  def params_dtype(self):
    return precision.dtype(self.param_dtype)


def param_init(init, axes):
  return nn.with_logical_partitioning(init, axes)


class Embedder(nn.Module):
  """Token + learned position (+ token-type, then LayerNorm and dropout: BERT) embeddings; ELECTRA's
  narrower embeddings (embed_dim) then a projection to d_model. Other layouts embed by their own
  function (families.embed_fn), under the same 'embedder' name so every strategy shares them."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, input_ids, deterministic: bool = True, token_type_ids=None, positions=None):
    """positions [B, L]: each token's position in its own example (packed rows); None: 0..L-1."""
    cfg = self.config
    custom = families.embed_fn(cfg)
    if custom is not None:
      x = custom(self, input_ids, deterministic, token_type_ids)
      return nn.with_logical_constraint(x.astype(cfg.compute_dtype), ("batch", "length", "embed"))
    init = nn.initializers.normal(0.02)
    width = cfg.embed_dim or cfg.d_model
    tok = nn.Embed(cfg.vocab_size, width, name="token", embedding_init=param_init(init, ("vocab", "embed")),
                   param_dtype=cfg.params_dtype)
    pos = self.param("position", param_init(init, ("length", "embed")), (cfg.max_len + cfg.position_offset, width),
                     cfg.params_dtype)
    if positions is None:
      x = tok(input_ids) + pos[None, cfg.position_offset: cfg.position_offset + input_ids.shape[1]]
    else:  # packed rows: positions restart at 0 on each example's first token
      x = tok(input_ids) + pos[cfg.position_offset + positions]
    if cfg.type_vocab_size:  # segments: 1 on a native pair's second text (mtl_jax/input/pairs.py), else 0
      table = self.param("token_type", param_init(init, (None, "embed")), (cfg.type_vocab_size, width),
                         cfg.params_dtype)
      x = x + (table[0] if token_type_ids is None else table[jnp.clip(token_type_ids, 0, cfg.type_vocab_size - 1)])
    if cfg.embed_norm:
      x = nn.Dropout(cfg.dropout_rate)(LayerNorm(cfg.layer_norm_eps, cfg.param_dtype, name="ln")(x), deterministic=deterministic)
    if cfg.embed_dim:  # ELECTRA: embeddings_project (embedding_size -> hidden_size)
      x = nn.Dense(cfg.d_model, name="projection", dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype,
                   kernel_init=param_init(_DENSE_INIT, (None, "embed")),
                   bias_init=param_init(nn.initializers.zeros, ("embed",)))(x)
    return nn.with_logical_constraint(x.astype(cfg.compute_dtype), ("batch", "length", "embed"))


class LayerNorm(nn.Module):
  """Statistics and output in float32 whatever the activations are; the result is cast back to x's dtype."""
  epsilon: float = 1e-6  # nn.LayerNorm's default (the from-scratch encoder); BERT's is 1e-12
  param_dtype: str = "float32"

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm(
        epsilon=self.epsilon, dtype=jnp.float32, param_dtype=precision.dtype(self.param_dtype),
        scale_init=param_init(nn.initializers.ones, ("embed",)),
        bias_init=param_init(nn.initializers.zeros, ("embed",)))(x.astype(jnp.float32))
    return y.astype(x.dtype)


def final_norm(config: EncoderConfig, name: str = "ln_final"):
  """The trunk's closing LayerNorm: pre-LN stacks need one; post-LN stacks (BERT) end normalised."""
  return LayerNorm(config.layer_norm_eps, config.param_dtype, name=name) if config.norm == "pre" else (lambda x: x)


class SelfAttention(nn.Module):
  """Multi-head self-attention; projections are explicit [D, H, K] params so their
  logical names apply to the array as created (DenseGeneral initialises them flat)."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask, deterministic: bool):
    cfg = self.config
    dt, pdt = cfg.compute_dtype, cfg.params_dtype
    x = x.astype(dt)
    shape_DHK = (cfg.d_model, cfg.num_heads, cfg.head_dim)
    def proj(name):
      w_DHK = self.param(f"{name}_kernel", param_init(_DENSE_INIT, ("embed", "heads", "kv")), shape_DHK, pdt)
      b_HK = self.param(f"{name}_bias", param_init(nn.initializers.zeros, ("heads", "kv")), shape_DHK[1:], pdt)
      return jnp.einsum("bld,dhk->blhk", x, w_DHK.astype(dt)) + b_HK.astype(dt)
    q_BLHK, k_BLHK, v_BLHK = proj("query"), proj("key"), proj("value")
    logits_BHLL = jnp.einsum("bqhk,bshk->bhqs", q_BLHK, k_BLHK) / jnp.sqrt(cfg.head_dim).astype(x.dtype)
    logits_BHLL = logits_BHLL.astype(jnp.float32)  # softmax statistics in float32 (a no-op at float32)
    # mask: segment ids (0 = padding; packed rows: 1..S per example, models/segments.py): block-diagonal
    logits_BHLL = jnp.where(segments.attention_allowed(mask), logits_BHLL, jnp.finfo(logits_BHLL.dtype).min)
    probs_BHLL = nn.Dropout(cfg.dropout_rate)(nn.softmax(logits_BHLL, axis=-1), deterministic=deterministic)
    out_BLHK = jnp.einsum("bhqs,bshk->bqhk", probs_BHLL.astype(dt), v_BLHK)
    w_HKD = self.param("out_kernel", param_init(_DENSE_INIT, ("heads", "kv", "embed")),
                       (cfg.num_heads, cfg.head_dim, cfg.d_model), pdt)
    b_D = self.param("out_bias", param_init(nn.initializers.zeros, ("embed",)), (cfg.d_model,), pdt)
    return jnp.einsum("blhk,hkd->bld", out_BLHK, w_HKD.astype(dt)) + b_D.astype(dt)


class Mlp(nn.Module):
  config: EncoderConfig

  @nn.compact
  def __call__(self, x, deterministic: bool):
    cfg = self.config
    dtypes = dict(dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype)
    h = nn.Dense(cfg.mlp_dim, name="wi", kernel_init=param_init(_DENSE_INIT, ("embed", "mlp")), **dtypes,
                 bias_init=param_init(nn.initializers.zeros, ("mlp",)))(x)
    h = nn.with_logical_constraint(nn.gelu(h, approximate=not cfg.gelu_exact), ("batch", "length", "mlp"))
    if cfg.norm == "pre":  # the from-scratch encoder's extra dropout; BERT (post-LN) has none inside the MLP
      h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return nn.Dense(cfg.d_model, name="wo", kernel_init=param_init(_DENSE_INIT, ("mlp", "embed")), **dtypes,
                    bias_init=param_init(nn.initializers.zeros, ("embed",)))(h)


def residual_block(norm: str, x, attention, mlp, ln_attention, ln_mlp):
  """One layer's residual wiring, shared by every layer variant: pre-LN x + f(LN(x)); post-LN LN(x + f(x))."""
  if norm == "pre":
    x = x + attention(ln_attention(x))
    x = x + mlp(ln_mlp(x))
  else:
    x = ln_attention(x + attention(x))
    x = ln_mlp(x + mlp(x))
  return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class TransformerLayer(nn.Module):
  """x [B, L, D] -> [B, L, D]; mask [B, L] marks real tokens.

  pre-LN: x + f(LN(x)); post-LN (BERT): LN(x + f(x)). The LayerNorms keep their names
  (ln_attention after/before attention, ln_mlp after/before the MLP) either way."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask, deterministic: bool = True):
    cfg = self.config
    drop = nn.Dropout(cfg.dropout_rate)
    ln_attention = LayerNorm(cfg.layer_norm_eps, cfg.param_dtype, name="ln_attention")
    ln_mlp = LayerNorm(cfg.layer_norm_eps, cfg.param_dtype, name="ln_mlp")
    attention = lambda h: drop(SelfAttention(cfg, name="attention")(h, mask, deterministic),
                               deterministic=deterministic)
    mlp = lambda h: drop(Mlp(cfg, name="mlp")(h, deterministic), deterministic=deterministic)
    return residual_block(cfg.norm, x, attention, mlp, ln_attention, ln_mlp)


for _model_type in families.BERT_FAMILY:
  families.register(_model_type, layer=TransformerLayer)


def layer_module(config: EncoderConfig, in_scan: bool = False):
  """The layout's layer class (TransformerLayer for the BERT family; families.layer_class picks it by
  `config.model_type`), rematerialised per `config.remat_policy` (call it as layer(x, mask, deterministic))."""
  return remat.wrap(families.layer_class(config), config.remat_policy, prevent_cse=not in_scan)


class _ScannedLayer(nn.Module):
  """One scan step: (x, mask) -> (x', x'); `deterministic` is an attribute (a scan carries arrays only)."""

  config: EncoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x, mask):
    x = layer_module(self.config, in_scan=True)(self.config, name="layer")(x, mask, self.deterministic)
    return x, x


class LayerStack(nn.Module):
  """`num_layers` transformer layers; returns every layer's output [K, B, L, D].

  scan_layers: one nn.scan over a 'layers'-stacked layer (params at layer_scan/layer/...)
  instead of K unrolled layer_{k} modules: the step compiles one layer body whatever K."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask, deterministic: bool = True):
    cfg = self.config
    if cfg.scan_layers:
      scan = nn.scan(_ScannedLayer, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                     in_axes=nn.broadcast, length=cfg.num_layers, metadata_params={nn.PARTITION_NAME: "layers"})
      _, outs_KBLD = scan(cfg, deterministic, name="layer_scan")(x, mask)
      return outs_KBLD
    outs = []
    layer = layer_module(cfg)
    layer_mask = families.layer_inputs(cfg, mask, x.shape[1])  # the mask (+ shared positions: T5's bias)
    for k in range(cfg.num_layers):
      x = layer(cfg, name=f"layer_{k}")(x, layer_mask, deterministic)
      outs.append(x)
    return jnp.stack(outs)
