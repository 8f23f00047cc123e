"""The name map between HF BERT / RoBERTa / XLM-R / ELECTRA / T5-encoder tensors and mtl_jax's params.

One table, used both ways (read a checkpoint, export a trained trunk). HF stores
torch Linear weights as [out, in]; ours are [in, ...] with attention projections
split per head ([D, H, K] / [H, K, D]). Our flat names:
  embedder/token/embedding, embedder/position, embedder/token_type, embedder/ln/LayerNorm_0/{scale,bias},
  embedder/projection/{kernel,bias} (ELECTRA's embeddings_project, when embedding_size != hidden_size)
  layer_{k}/attention/{query,key,value}_{kernel,bias}, attention/out_{kernel,bias}
  layer_{k}/ln_attention/LayerNorm_0/{scale,bias}, mlp/wi/{kernel,bias}, mlp/wo/{kernel,bias},
  layer_{k}/ln_mlp/LayerNorm_0/{scale,bias}
(a post-LN layer: ln_attention follows attention, ln_mlp follows the MLP, as in BERT).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from mtl_jax.models.encoder import EncoderConfig

_LN = "/LayerNorm_0/"


class Entry(NamedTuple):
  """Several entries may share one HF tensor (a fused projection): each takes its slice of rows
  (to_ours) and gives its rows back (to_hf); export concatenates them in table order."""
  hf: str                  # HF name without the model prefix ('bert.', 'roberta.')
  ours: str                # our flat name
  shape: tuple             # HF shape
  to_ours: Callable[[np.ndarray], np.ndarray]
  to_hf: Callable[[np.ndarray], np.ndarray]


def _same(x):
  return x


def table(cfg: EncoderConfig) -> list[Entry]:
  """Every tensor an encoder of this config has, in HF order (one map per model_type)."""
  if cfg.model_type == "t5":
    return _t5_table(cfg)
  if cfg.model_type == "deberta-v2":
    return _deberta_table(cfg)
  if cfg.model_type == "modernbert":
    return _modernbert_table(cfg)
  d, h, k, f = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.mlp_dim
  e = cfg.embed_dim or d
  ln = lambda hf, ours, n=d: [Entry(f"{hf}.weight", f"{ours}{_LN}scale", (n,), _same, _same),
                              Entry(f"{hf}.bias", f"{ours}{_LN}bias", (n,), _same, _same)]
  entries = [
      Entry("embeddings.word_embeddings.weight", "embedder/token/embedding", (cfg.vocab_size, e), _same, _same),
      Entry("embeddings.position_embeddings.weight", "embedder/position", (cfg.max_len + cfg.position_offset, e),
            _same, _same),
  ]
  if cfg.type_vocab_size:
    entries.append(Entry("embeddings.token_type_embeddings.weight", "embedder/token_type",
                         (cfg.type_vocab_size, e), _same, _same))
  entries += ln("embeddings.LayerNorm", "embedder/ln", e)
  if cfg.embed_dim:
    entries += [Entry("embeddings_project.weight", "embedder/projection/kernel", (d, e), np.transpose, np.transpose),
                Entry("embeddings_project.bias", "embedder/projection/bias", (d,), _same, _same)]
  return entries + _post_ln_layers(cfg, ln, qkv_suffix="")



def _post_ln_layers(cfg: EncoderConfig, ln, qkv_suffix: str) -> list[Entry]:
  """The BERT-named post-LN layers (BERT / RoBERTa / ELECTRA: attention.self.query; DeBERTa-v2:
  attention.self.query_proj): `ln(hf, ours)` gives a LayerNorm's two entries."""
  d, h, k, f = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.mlp_dim
  entries = []
  for layer in range(cfg.num_layers):
    hf, ours = f"encoder.layer.{layer}.", f"layer_{layer}/"
    for proj in ("query", "key", "value"):
      entries += [
          Entry(f"{hf}attention.self.{proj}{qkv_suffix}.weight", f"{ours}attention/{proj}_kernel", (h * k, d),
                lambda w: w.T.reshape(d, h, k), lambda w: w.reshape(d, h * k).T),
          Entry(f"{hf}attention.self.{proj}{qkv_suffix}.bias", f"{ours}attention/{proj}_bias", (h * k,),
                lambda b: b.reshape(h, k), lambda b: b.reshape(h * k)),
      ]
    entries += [
        Entry(f"{hf}attention.output.dense.weight", f"{ours}attention/out_kernel", (d, h * k),
              lambda w: w.T.reshape(h, k, d), lambda w: w.reshape(h * k, d).T),
        Entry(f"{hf}attention.output.dense.bias", f"{ours}attention/out_bias", (d,), _same, _same),
        *ln(f"{hf}attention.output.LayerNorm", f"{ours}ln_attention"),
        Entry(f"{hf}intermediate.dense.weight", f"{ours}mlp/wi/kernel", (f, d), np.transpose, np.transpose),
        Entry(f"{hf}intermediate.dense.bias", f"{ours}mlp/wi/bias", (f,), _same, _same),
        Entry(f"{hf}output.dense.weight", f"{ours}mlp/wo/kernel", (d, f), np.transpose, np.transpose),
        Entry(f"{hf}output.dense.bias", f"{ours}mlp/wo/bias", (d,), _same, _same),
        *ln(f"{hf}output.LayerNorm", f"{ours}ln_mlp"),
    ]
  return entries

def _t5_table(cfg: EncoderConfig) -> list[Entry]:
  """T5EncoderModel's tensors (no biases; the relative bias table in block 0 only, shared by all layers:
  ours is positions/embedding beside the layers; the final RMSNorm closes our last layer)."""
  d, h, k, f = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.mlp_dim
  entries = [Entry("shared.weight", "embedder/token/embedding", (cfg.vocab_size, d), _same, _same),
             Entry("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "positions/embedding",
                   (cfg.relative_buckets, h), _same, _same)]
  for layer in range(cfg.num_layers):
    hf, ours = f"encoder.block.{layer}.layer.", f"layer_{layer}/"
    for short, proj in (("q", "query"), ("k", "key"), ("v", "value")):
      entries.append(Entry(f"{hf}0.SelfAttention.{short}.weight", f"{ours}attention/{proj}_kernel", (h * k, d),
                           lambda w: w.T.reshape(d, h, k), lambda w: w.reshape(d, h * k).T))
    entries += [
        Entry(f"{hf}0.SelfAttention.o.weight", f"{ours}attention/out_kernel", (d, h * k),
              lambda w: w.T.reshape(h, k, d), lambda w: w.reshape(h * k, d).T),
        Entry(f"{hf}0.layer_norm.weight", f"{ours}ln_attention/scale", (d,), _same, _same),
    ]
    for wi in (("wi_0", "wi_1") if cfg.mlp_gated else ("wi",)):
      entries.append(Entry(f"{hf}1.DenseReluDense.{wi}.weight", f"{ours}mlp/{wi}/kernel", (f, d), np.transpose,
                           np.transpose))
    entries += [
        Entry(f"{hf}1.DenseReluDense.wo.weight", f"{ours}mlp/wo/kernel", (d, f), np.transpose, np.transpose),
        Entry(f"{hf}1.layer_norm.weight", f"{ours}ln_mlp/scale", (d,), _same, _same),
    ]
  entries.append(Entry("encoder.final_layer_norm.weight", f"layer_{cfg.num_layers - 1}/ln_final/scale", (d,),
                       _same, _same))
  return entries


def _deberta_table(cfg: EncoderConfig) -> list[Entry]:
  """DebertaV2Model's tensors: BERT's layer names but {query,key,value}_proj, no absolute positions, the
  embedding LayerNorm after embed_proj (no bias), and ONE relative table + LayerNorm (encoder.rel_embeddings,
  encoder.LayerNorm) shared by every layer: ours positions/{embedding, ln} beside the layers."""
  from mtl_jax.models import deberta
  d, h, k, f = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.mlp_dim
  e = cfg.embed_dim or d
  ln = lambda hf, ours: [Entry(f"{hf}.weight", f"{ours}{_LN}scale", (d,), _same, _same),
                         Entry(f"{hf}.bias", f"{ours}{_LN}bias", (d,), _same, _same)]
  entries = [Entry("embeddings.word_embeddings.weight", "embedder/token/embedding", (cfg.vocab_size, e), _same, _same)]
  if cfg.type_vocab_size:
    entries.append(Entry("embeddings.token_type_embeddings.weight", "embedder/token_type",
                         (cfg.type_vocab_size, e), _same, _same))
  if cfg.embed_dim:
    entries.append(Entry("embeddings.embed_proj.weight", "embedder/projection/kernel", (d, e), np.transpose,
                         np.transpose))
  entries += ln("embeddings.LayerNorm", "embedder/ln")
  entries += [Entry("encoder.rel_embeddings.weight", "positions/embedding", (2 * deberta.span(cfg), d), _same, _same),
              *ln("encoder.LayerNorm", "positions/ln")]
  return entries + _post_ln_layers(cfg, ln, qkv_suffix="_proj")


def _modernbert_table(cfg: EncoderConfig) -> list[Entry]:
  """ModernBertModel's tensors (no biases): the fused Wqkv [3 H K, D] splits into our query / key / value
  kernels and Wi [2 F, D] into wi_0 (GELU input) / wi_1 (gate); layer 0 has no attn_norm; final_norm
  closes our last layer."""
  d, h, k, f = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.mlp_dim
  a = h * k
  entries = [Entry("embeddings.tok_embeddings.weight", "embedder/token/embedding", (cfg.vocab_size, d), _same, _same),
             Entry("embeddings.norm.weight", "embedder/ln/scale", (d,), _same, _same)]
  for layer in range(cfg.num_layers):
    hf, ours = f"layers.{layer}.", f"layer_{layer}/"
    if layer:
      entries.append(Entry(f"{hf}attn_norm.weight", f"{ours}ln_attention/scale", (d,), _same, _same))
    for j, proj in enumerate(("query", "key", "value")):
      entries.append(Entry(f"{hf}attn.Wqkv.weight", f"{ours}attention/{proj}_kernel", (3 * a, d),
                           lambda w, j=j: w[j * a:(j + 1) * a].T.reshape(d, h, k), lambda w: w.reshape(d, a).T))
    entries += [
        Entry(f"{hf}attn.Wo.weight", f"{ours}attention/out_kernel", (d, a),
              lambda w: w.T.reshape(h, k, d), lambda w: w.reshape(a, d).T),
        Entry(f"{hf}mlp_norm.weight", f"{ours}ln_mlp/scale", (d,), _same, _same),
        Entry(f"{hf}mlp.Wi.weight", f"{ours}mlp/wi_0/kernel", (2 * f, d), lambda w: w[:f].T, np.transpose),
        Entry(f"{hf}mlp.Wi.weight", f"{ours}mlp/wi_1/kernel", (2 * f, d), lambda w: w[f:].T, np.transpose),
        Entry(f"{hf}mlp.Wo.weight", f"{ours}mlp/wo/kernel", (d, f), np.transpose, np.transpose),
    ]
  entries.append(Entry("final_norm.weight", f"layer_{cfg.num_layers - 1}/ln_final/scale", (d,), _same, _same))
  return entries


def normalise_hf_name(name: str) -> str:
  """Old TF-converted BERT checkpoints call LayerNorm's weight/bias gamma/beta."""
  if ".LayerNorm." in name:
    name = name.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(".LayerNorm.beta", ".LayerNorm.bias")
  return name
