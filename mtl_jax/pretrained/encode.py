"""Texts -> a checkpoint's final-layer hidden states (the input of probes and task embeddings).

  python -m mtl_jax.pretrained.encode --checkpoint=DIR_OR_NAME --input=TEXTS.txt --output=OUT.npz \
      [--max_length=512] [--batch_size=32]

One text per line; a line `a<TAB>b` is a sentence pair, encoded as the checkpoint was pretrained on
pairs (`[CLS] a [SEP] b [SEP]` with token types 0 / 1, RoBERTa `<s> a </s></s> b </s>`; HF's longest-first
truncation; mtl_jax/input/pairs.py), as mtl-predict and training encode pairs. OUT.npz holds `input_ids`
[N, L] int32 (0-padded), `mask` [N, L] int32 and `hidden` [N, L, D] float32 (0 at padded positions),
L = the longest encoded text, plus `token_type_ids` [N, L] int32 when any line is a pair. Texts are
tokenised by the checkpoint's own tokenizer as training tokenises them (tokenizer.vocabulary_for):
[CLS] pieces [SEP] (RoBERTa: <s> ... </s>), truncated HF-style to max_length (at most the
checkpoint's positions) keeping both specials.
The encoder is the run's: `Embedder` + the hard-sharing trunk with the checkpoint loaded,
deterministic, one jit per (batch, bucketed length) shape.
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mtl_jax.models.encoder import EncoderConfig, Embedder
from mtl_jax.pretrained import checkpoint as checkpoint_lib
from mtl_jax.pretrained import store
from mtl_jax.sharing.hard import HardSharing

LENGTH_BUCKET = 16  # compute at L rounded up to this (fewer compiles); padding never reaches real tokens
TOKENIZE_CHUNK = 1024


class Encoder(nn.Module):
  """Embedder + hard trunk, named as in MultiTaskModel ('embedder', 'trunk')."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, input_ids, mask, token_type_ids=None):
    x = Embedder(self.config, name="embedder")(input_ids, True, token_type_ids)
    return HardSharing(self.config, 1, name="trunk")(x, mask, jnp.zeros(input_ids.shape[:1], jnp.int32), True)


def encoder_params(flat: dict[str, np.ndarray]) -> dict:
  """Checkpoint flat names (Checkpoint.params()) -> the Encoder's param tree."""
  tree = {"embedder": {}, "trunk": {"trunk": {}}}
  for name, value in flat.items():
    target = tree["embedder"] if name.startswith("embedder/") else tree["trunk"]["trunk"]
    target[name.removeprefix("embedder/")] = value
  return {"embedder": traverse_util.unflatten_dict(tree["embedder"], sep="/"),
          "trunk": {"trunk": traverse_util.unflatten_dict(tree["trunk"]["trunk"], sep="/")}}


@functools.partial(jax.jit, static_argnums=0)
def _forward(config: EncoderConfig, params, input_ids, mask, token_type_ids=None):
  hidden = Encoder(config).apply({"params": params}, input_ids, mask, token_type_ids)
  return jnp.where(mask[..., None].astype(bool), hidden, 0.0).astype(jnp.float32)


def token_ids(path: pathlib.Path, texts: list[str], max_length: int) -> list[list[int]]:
  """Each text as the checkpoint's tokenizer (tokenizer.vocabulary_for, what training uses) encodes
  it: [CLS] pieces [SEP], the pieces cut HF-style so that the specials fit in max_length."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")  # TF only tokenizes; the accelerator is JAX's
  except RuntimeError:  # TF already initialised its devices in this process
    pass
  from mtl_jax.pretrained import tokenizer
  vocab = tokenizer.vocabulary_for(path)
  if isinstance(vocab, tokenizer.WordPieceVocabulary):  # in-graph: one TF call per chunk, not per text
    pieces = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
      pieces += vocab.encode_tf(tf.constant(texts[start:start + TOKENIZE_CHUNK], tf.string)).to_list()
  else:
    pieces = [list(vocab.encode(t)) for t in texts]
  bos = [vocab.bos_id] if vocab.add_bos else []
  return [bos + list(p[:max_length - len(bos) - 1]) + [vocab.eos_id] for p in pieces]


def pair_ids(path: pathlib.Path, pairs_: list[tuple[str, str]], max_length: int) -> list[tuple[list, list]]:
  """(ids, token types) of each pair as training encodes it (pairs.native: the checkpoint's pair layout,
  HF's longest-first truncation to max_length)."""
  import tensorflow as tf
  from mtl_jax.input import pairs
  from mtl_jax.pretrained import tokenizer
  vocab = tokenizer.vocabulary_for(path)
  layout = pairs.layout_for(vocab)
  out = []
  for a, b in pairs_:
    ids, types = pairs.native(tf.constant(list(vocab.encode(a)), tf.int32),
                              tf.constant(list(vocab.encode(b)), tf.int32), layout, max_length, b == "")
    out.append((ids.numpy().tolist(), types.numpy().tolist()))
  return out


class TextEncoder:
  """One checkpoint: its config, tokenizer and device-resident weights, reused across calls."""

  def __init__(self, checkpoint: str | os.PathLike, params: dict[str, np.ndarray] | None = None):
    """params: flat checkpoint-named weights to run instead of the checkpoint's own (e.g. a trained trunk)."""
    self.checkpoint = checkpoint_lib.open_checkpoint(store.resolve(checkpoint))
    self.config = self.checkpoint.encoder_config(dropout_rate=0.0)
    self.params = jax.device_put(encoder_params(self.checkpoint.params() if params is None else params))

  @property
  def max_length(self) -> int:
    return self.config.max_len

  def tokenize(self, texts: list[str], max_length: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """input_ids, mask [N, L] int32; L = the longest encoded text."""
    return self.tokenize_with_types(texts, max_length)[:2]

  def tokenize_with_types(self, texts: list[str], max_length: int = 512):
    """input_ids, mask, token_type_ids [N, L] int32; a text with a TAB is the pair (before, after it)."""
    if max_length < 2:
      raise ValueError(f"max_length must be >= 2 ([CLS] and [SEP]), got {max_length}")
    texts, length = list(texts), min(max_length, self.max_length)
    is_pair = ["\t" in t for t in texts]
    rows = [(r, [0] * len(r)) for r in token_ids(self.checkpoint.path, [t for t, p in zip(texts, is_pair) if not p],
                                                 length)]
    pair_rows = pair_ids(self.checkpoint.path, [tuple(t.split("\t", 1)) for t, p in zip(texts, is_pair) if p],
                         length) if any(is_pair) else []
    rows = [(pair_rows if p else rows).pop(0) for p in is_pair]
    width = max(len(r) for r, _ in rows)
    ids, types = np.zeros((len(rows), width), np.int32), np.zeros((len(rows), width), np.int32)
    for i, (r, t) in enumerate(rows):
      ids[i, :len(r)], types[i, :len(t)] = r, t
    mask = (np.arange(width)[None] < np.array([len(r) for r, _ in rows])[:, None]).astype(np.int32)
    return ids, mask, types

  def hidden(self, input_ids: np.ndarray, mask: np.ndarray, batch_size: int = 32,
             token_type_ids: np.ndarray | None = None) -> np.ndarray:
    """[N, L, D] float32 final-layer hidden states (0 where mask is 0), in batches of `batch_size`."""
    n, length = input_ids.shape
    if length > self.max_length:
      raise ValueError(f"inputs of length {length} exceed the checkpoint's {self.max_length} positions")
    rows = min(batch_size, n)
    padded = min(-(-length // LENGTH_BUCKET) * LENGTH_BUCKET, self.max_length)
    out = np.zeros((n, length, self.config.d_model), np.float32)
    for start in range(0, n, rows):
      ids_b, mask_b, types_b = (np.zeros((rows, padded), np.int32) for _ in range(3))
      stop = min(start + rows, n)
      ids_b[:stop - start, :length], mask_b[:stop - start, :length] = input_ids[start:stop], mask[start:stop]
      if token_type_ids is not None:
        types_b[:stop - start, :length] = token_type_ids[start:stop]
      out[start:stop] = np.asarray(_forward(self.config, self.params, ids_b, mask_b, types_b))[:stop - start, :length]
    return out

  def encode(self, texts: list[str], max_length: int = 512, batch_size: int = 32) -> dict[str, np.ndarray]:
    if not texts:
      raise ValueError("no texts to encode")
    ids, mask, types = self.tokenize_with_types(texts, max_length)
    out = {"input_ids": ids, "mask": mask, "hidden": self.hidden(ids, mask, batch_size, types)}
    if any("\t" in t for t in texts):
      out["token_type_ids"] = types
    return out


def encode_texts(checkpoint: str | os.PathLike, texts: list[str], max_length: int = 512,
                 batch_size: int = 32) -> dict[str, np.ndarray]:
  """{'input_ids', 'mask', 'hidden'} for `texts` (see the module docstring)."""
  return TextEncoder(checkpoint).encode(texts, max_length, batch_size)


def read_texts(path: str | os.PathLike) -> list[str]:
  path = pathlib.Path(path)
  if not path.is_file():
    raise ValueError(f"--input {str(path)!r} does not exist; pass a text file with one text per line")
  texts = path.read_text(encoding="utf-8").splitlines()
  if not texts:
    raise ValueError(f"--input {str(path)!r} is empty; it needs one text per line")
  return texts


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="mtl-encode", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="a named model or an HF-layout directory")
  parser.add_argument("--input", required=True, help="text file, one text per line (a<TAB>b: a sentence pair)")
  parser.add_argument("--output", required=True, help="the .npz to write")
  parser.add_argument("--max_length", type=int, default=512, help="tokens per text, [CLS] and [SEP] included")
  parser.add_argument("--batch_size", type=int, default=32)
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  if args.batch_size < 1:
    parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
  if args.max_length < 2:
    parser.error(f"--max_length must be >= 2 ([CLS] and [SEP]), got {args.max_length}")
  from safetensors import SafetensorError
  from mtl_jax.train import one_line
  try:
    texts = read_texts(args.input)
    arrays = encode_texts(args.checkpoint, texts, args.max_length, args.batch_size)
    output = pathlib.Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez(output, **arrays)
  except (ValueError, KeyError, OSError, SafetensorError) as e:
    print(f"mtl-encode: error: {one_line(e)}", file=sys.stderr, flush=True)
    return 2
  ids = arrays["input_ids"]
  print(f"mtl-encode: {len(texts)} texts, length {ids.shape[1]}, hidden {arrays['hidden'].shape[2]} -> {output}",
        flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
