"""Tiny random HF-layout checkpoints for tests (no hub, no torch): BERT or RoBERTa layout.

Written tensor by tensor with HF's own names (independent of our name map, so reading
them back tests the map), with MiniLM's tokenizer files so real text tokenizes.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
from safetensors.numpy import save_file

from mtl_jax.pretrained import store

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def hf_tensor_shapes(d, heads, ff, layers, vocab, positions, types) -> dict[str, tuple]:
  """BERT's tensor names and shapes, written out from the HF BertModel layout."""
  shapes = {
      "embeddings.word_embeddings.weight": (vocab, d),
      "embeddings.position_embeddings.weight": (positions, d),
      "embeddings.token_type_embeddings.weight": (types, d),
      "embeddings.LayerNorm.weight": (d,), "embeddings.LayerNorm.bias": (d,),
      "pooler.dense.weight": (d, d), "pooler.dense.bias": (d,),
  }
  for k in range(layers):
    p = f"encoder.layer.{k}."
    for proj in ("query", "key", "value"):
      shapes[f"{p}attention.self.{proj}.weight"] = (d, d)
      shapes[f"{p}attention.self.{proj}.bias"] = (d,)
    shapes.update({
        f"{p}attention.output.dense.weight": (d, d), f"{p}attention.output.dense.bias": (d,),
        f"{p}attention.output.LayerNorm.weight": (d,), f"{p}attention.output.LayerNorm.bias": (d,),
        f"{p}intermediate.dense.weight": (ff, d), f"{p}intermediate.dense.bias": (ff,),
        f"{p}output.dense.weight": (d, ff), f"{p}output.dense.bias": (d,),
        f"{p}output.LayerNorm.weight": (d,), f"{p}output.LayerNorm.bias": (d,),
    })
  return shapes


def write_tiny_checkpoint(path, model_type="bert", d=32, heads=2, ff=64, layers=2, seed=0, prefix="",
                          hidden_act="gelu", pooling=None, tokenizer=True) -> pathlib.Path:
  """A random BERT-layout ('bert') or RoBERTa-layout checkpoint directory with MiniLM's vocabulary."""
  path = pathlib.Path(path)
  path.mkdir(parents=True, exist_ok=True)
  minilm = store.resolve("all-MiniLM-L6-v2")
  vocab = 30522
  roberta = model_type != "bert"
  positions, types = (66, 1) if roberta else (64, 2)
  config = {"model_type": model_type, "hidden_size": d, "num_attention_heads": heads, "intermediate_size": ff,
            "num_hidden_layers": layers, "max_position_embeddings": positions, "type_vocab_size": types,
            "vocab_size": vocab, "hidden_act": hidden_act, "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0, "pad_token_id": 1 if roberta else 0,
            "architectures": ["RobertaModel" if roberta else "BertModel"]}
  (path / "config.json").write_text(json.dumps(config))
  rng = np.random.default_rng(seed)
  tensors = {}
  for name, shape in hf_tensor_shapes(d, heads, ff, layers, vocab, positions, types).items():
    scale = 0.1 if name.endswith("bias") else 0.3
    base = 1.0 if "LayerNorm.weight" in name else 0.0
    tensors[prefix + name] = (base + scale * rng.standard_normal(shape)).astype(np.float32)
  save_file(tensors, str(path / "model.safetensors"))
  if tokenizer:
    for f in TOKENIZER_FILES:
      shutil.copy(minilm / f, path / f)
  if pooling:
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps({f"pooling_mode_{pooling}_tokens": True}))
  return path
