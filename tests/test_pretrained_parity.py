"""Our encoder (the encode path: Embedder + hard trunk) against a numpy BERT written from the
equations (tests/bert_reference.py) and against HF transformers, on MiniLM and a RoBERTa layout."""

import numpy as np
import pytest

import bert_reference
from mtl_jax.pretrained import encode

pytestmark = pytest.mark.xdist_group("pretrained_parity")  # one worker under -n: MiniLM is loaded and encoded once

TOL = 1e-4
TEXTS = ["The cat sat on the mat.", "Short.",
         "A noticeably longer sentence, with punctuation and rarer words such as photosynthesis, so that the "
         "others are padded.", "Zwölf Boxkämpfer jagen Viktor quer über den Sylter Deich"]


@pytest.fixture(scope="module")
def minilm():
  return encode.TextEncoder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def batch(minilm):
  return minilm.encode(TEXTS, max_length=48, batch_size=4)


def _real_diff(a, b, mask):
  return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))[mask.astype(bool)].max())


def test_batch_has_padding(batch):
  lengths = batch["mask"].sum(1)
  assert lengths.min() < lengths.max() == batch["mask"].shape[1]  # a padded row and a full one
  assert (batch["input_ids"][batch["mask"] == 0] == 0).all()


def test_matches_the_numpy_reference(minilm, batch):
  want = bert_reference.forward(minilm.checkpoint.path, batch["input_ids"], batch["mask"])
  diff = _real_diff(batch["hidden"], want, batch["mask"])
  print(f"MiniLM vs numpy reference: max|diff| = {diff:.2e}")
  assert diff <= TOL
  assert np.abs(want[batch["mask"].astype(bool)]).max() > 0.1  # not a comparison of zeros
  assert (batch["hidden"][batch["mask"] == 0] == 0).all()


def test_padding_does_not_leak_into_real_tokens(minilm, batch):
  ids, mask = batch["input_ids"].copy(), batch["mask"]
  rng = np.random.default_rng(0)
  ids[mask == 0] = rng.integers(1000, 30000, int((mask == 0).sum()))  # garbage where the mask is 0
  noisy = minilm.hidden(ids, mask, batch_size=4)
  assert _real_diff(noisy, batch["hidden"], mask) <= 1e-5
  for i in range(len(TEXTS)):  # each text alone, unpadded, gives the same states
    n = int(mask[i].sum())
    alone = minilm.hidden(batch["input_ids"][i:i + 1, :n], mask[i:i + 1, :n])
    np.testing.assert_allclose(alone[0], batch["hidden"][i, :n], atol=1e-5)


def test_matches_transformers(minilm, batch):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  model = transformers.AutoModel.from_pretrained(str(minilm.checkpoint.path)).eval()
  with torch.no_grad():
    out = model(input_ids=torch.tensor(batch["input_ids"], dtype=torch.long),
                attention_mask=torch.tensor(batch["mask"], dtype=torch.long)).last_hidden_state.numpy()
  diff = _real_diff(batch["hidden"], out, batch["mask"])
  print(f"MiniLM vs transformers: max|diff| = {diff:.2e}")
  assert diff <= TOL


def test_roberta_layout_matches_transformers(tmp_path):
  """A random RobertaModel saved by transformers: positions start at pad_token_id + 1 = 2."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  config = transformers.RobertaConfig(vocab_size=300, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=96, max_position_embeddings=40, type_vocab_size=1,
                                      pad_token_id=1, bos_token_id=0, eos_token_id=2)
  model = transformers.RobertaModel(config, add_pooling_layer=False).eval()
  with torch.no_grad():  # LayerNorms away from (1, 0) and non-zero biases, so every tensor matters
    for name, p in model.named_parameters():
      if "LayerNorm" in name or name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
  model.save_pretrained(str(tmp_path), safe_serialization=True)
  rng = np.random.default_rng(0)
  lengths = np.array([12, 5, 9])
  mask = (np.arange(12)[None] < lengths[:, None]).astype(np.int32)
  ids = np.where(mask, rng.integers(3, 300, mask.shape), 1).astype(np.int32)  # pad id 1, as HF pads RoBERTa
  ids[:, 0] = 0
  ours = encode.TextEncoder(tmp_path)
  assert ours.config.position_offset == 2
  got = ours.hidden(ids, mask)
  with torch.no_grad():
    want = model(input_ids=torch.tensor(ids, dtype=torch.long),
                 attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()
  diff = _real_diff(got, want, mask)
  print(f"RoBERTa layout vs transformers: max|diff| = {diff:.2e}")
  assert diff <= TOL
  assert _real_diff(bert_reference.forward(tmp_path, ids, mask), want, mask) <= TOL  # the reference's offset too
