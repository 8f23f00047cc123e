"""A numpy BERT / RoBERTa encoder forward pass written from the published equations.

Independent of mtl_jax (no name map, no flax): reads config.json and the safetensors
tensors by their HF names, and computes in float64
    x0 = LN(E_word[ids] + E_pos[offset + i] + E_type[0])
    a  = softmax(Q K^T / sqrt(d_head) + (mask - 1) * 1e9) V        per head
    h  = LN(x + a W_o + b_o);   x' = LN(h + gelu_erf(h W_i + b_i) W_2 + b_2)   (post-LN)
(Devlin et al. 2019; Vaswani et al. 2017; RoBERTa: position ids start at pad_token_id + 1).
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf

PREFIXES = ("", "bert.", "roberta.")


def load(path) -> tuple[dict, dict[str, np.ndarray]]:
  """(config, tensors without the model prefix, float64)."""
  path = pathlib.Path(path)
  config = json.loads((path / "config.json").read_text())
  raw = load_file(str(path / "model.safetensors"))
  prefix = next(p for p in PREFIXES if f"{p}embeddings.word_embeddings.weight" in raw)
  return config, {k[len(prefix):]: v.astype(np.float64) for k, v in raw.items() if k.startswith(prefix)}


def layer_norm(x, weight, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * weight + bias


def linear(x, t, name):
  return x @ t[f"{name}.weight"].T + t[f"{name}.bias"]  # torch Linear: weight is [out, in]


def gelu(x):
  return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def forward(path, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Final-layer hidden states [B, L, D] (float64) of the checkpoint at `path`."""
  config, t = load(path)
  if config.get("hidden_act", "gelu") != "gelu":
    raise ValueError(f"the reference implements erf GELU only, not {config['hidden_act']!r}")
  eps, heads = config.get("layer_norm_eps", 1e-12), config["num_attention_heads"]
  offset = config.get("pad_token_id", 1) + 1 if config["model_type"] in ("roberta", "xlm-roberta") else 0
  b, length = input_ids.shape
  x = (t["embeddings.word_embeddings.weight"][input_ids]
       + t["embeddings.position_embeddings.weight"][offset + np.arange(length)][None]
       + t["embeddings.token_type_embeddings.weight"][0])
  x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
  d = x.shape[-1]
  dh = d // heads
  additive = (mask[:, None, None, :].astype(np.float64) - 1.0) * 1e9  # [B, 1, 1, L]
  split = lambda y: y.reshape(b, length, heads, dh).transpose(0, 2, 1, 3)  # [B, H, L, dh]
  for k in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{k}."
    q, kk, v = (split(linear(x, t, f"{p}attention.self.{n}")) for n in ("query", "key", "value"))
    scores = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(dh) + additive
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, length, d)
    h = layer_norm(x + linear(context, t, f"{p}attention.output.dense"),
                   t[f"{p}attention.output.LayerNorm.weight"], t[f"{p}attention.output.LayerNorm.bias"], eps)
    ff = linear(gelu(linear(h, t, f"{p}intermediate.dense")), t, f"{p}output.dense")
    x = layer_norm(h + ff, t[f"{p}output.LayerNorm.weight"], t[f"{p}output.LayerNorm.bias"], eps)
  return x
