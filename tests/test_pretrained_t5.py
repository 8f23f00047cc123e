"""model_type 't5' (the T5 encoder: RMSNorm, one relative-position bias table shared by all layers,
ReLU or gated-GELU feed-forward) against HF transformers: hidden states, export, tokenizer ids,
every strategy."""

import json
import shutil

import numpy as np
import pytest

import trunk_families as tf_
from mtl_jax.models import t5
from mtl_jax.pretrained import checkpoint as ckpt_lib
from mtl_jax.pretrained import tokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.xdist_group("pretrained_t5")

VOCAB = 100


def _config(ff, heads):
  """d_kv * heads != d_model for 6 heads (as t5-v1_1-small / flan-t5-small: 6 x 64 < 512); 8 buckets
  with max_distance 20, so a 30-token input reaches the logarithmic buckets."""
  return transformers.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=3, num_heads=heads,
                               feed_forward_proj=ff, relative_attention_num_buckets=8,
                               relative_attention_max_distance=20, dropout_rate=0.0)


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
  """v1.1 / Flan layout: gated GELU, 6 heads of 8 over d_model 32."""
  return tf_.save_random(transformers.T5EncoderModel(_config("gated-gelu", 6)), tmp_path_factory.mktemp("t5") / "v11")


def test_buckets_match_transformers():
  torch = pytest.importorskip("torch")
  from transformers.models.t5.modeling_t5 import T5Attention
  pos = torch.arange(64)
  want = T5Attention._relative_position_bucket(pos[None, :] - pos[:, None], bidirectional=True, num_buckets=32,
                                               max_distance=128).numpy()
  got = t5.relative_buckets(64, 32, 128)
  np.testing.assert_array_equal(got, want)
  assert len(np.unique(got)) > 20  # exact and logarithmic buckets on both sides


@pytest.mark.parametrize("ff", ["gated-gelu", "relu"])
def test_hidden_states_and_export_match_transformers(ff, t5_dir, tmp_path):
  path = t5_dir if ff == "gated-gelu" else tf_.save_random(transformers.T5EncoderModel(_config("relu", 4)),
                                                           tmp_path / "v10")
  cfg = ckpt_lib.open_checkpoint(path).encoder_config()
  assert (cfg.model_type, cfg.mlp_gated, cfg.head_dim, cfg.pooling) == ("t5", ff == "gated-gelu", 8, "mean")
  ids, mask = tf_.padded_batch([30, 4, 17], VOCAB)
  tf_.check_parity_and_export(path, ids, mask, tmp_path, f"t5_{ff}", transformers.T5EncoderModel)


def test_the_relative_table_is_one_param_shared_by_every_layer(t5_dir):
  """One positions/embedding param per stack (not one per layer), as HF's block 0 holds the only table."""
  assert tf_.position_params(t5_dir) == ["trunk/trunk/positions/embedding"]


def test_sentencepiece_ids_equal_hf_on_corpus_sentences(tmp_path):
  """A unigram SentencePiece model trained here from corpus text (no real one ships offline); HF's
  T5 tokenizer converted from it. Our ids (tokenizer.json via `tokenizers`, and spiece.model alone via
  seqio's SentencePieceVocabulary) are HF's: pieces </s>."""
  import sentencepiece as spm
  from tasks import offline
  train = [e["text"] for e in offline.examples("rotten_tomatoes", "train")[:400]]
  texts = [e["text"] for e in offline.examples("rotten_tomatoes", "validation")[:150]] + [
      "Zwölf Boxkämpfer jagen Viktor", "tabs\tand  spaces", "", "😂 #tag"]
  spm_dir = tmp_path / "spm"
  spm_dir.mkdir()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(train), model_prefix=str(spm_dir / "spiece"), vocab_size=300,
                                 pad_id=0, eos_id=1, unk_id=2, bos_id=-1, model_type="unigram", minloglevel=2)
  (spm_dir / "config.json").write_text(json.dumps({"model_type": "t5"}))
  hf = transformers.AutoTokenizer.from_pretrained(str(spm_dir), extra_ids=0)
  fast_dir = tmp_path / "fast"
  hf.save_pretrained(str(fast_dir))
  shutil.copy(spm_dir / "config.json", fast_dir / "config.json")
  assert (fast_dir / "tokenizer.json").is_file() and not (fast_dir / "spiece.model").exists()
  for directory in (fast_dir, spm_dir):
    vocab = tokenizer.vocabulary_for(directory)
    assert not vocab.add_bos and vocab.eos_id == 1 and vocab.pad_id == 0
    tf_.check_ids_and_pairs(vocab, hf, texts)
  assert any(2 in hf(t)["input_ids"] for t in texts)  # <unk> occurs: unseen characters are compared too


@pytest.mark.parametrize("strategy", tf_.STRATEGY_PARAMS)
def test_every_strategy_trains_one_step(strategy, t5_dir):
  tf_.train_one_step(t5_dir, strategy, VOCAB)


def test_bad_inputs_name_what_is_supported_or_the_tensor(tmp_path, t5_dir):
  opened = lambda **changes: ckpt_lib.open_checkpoint(tf_.with_config(t5_dir, tmp_path, **changes))
  tf_.check_one_line_error(lambda: opened(feed_forward_proj="gated-silu"),
                           r"feed_forward_proj 'gated-silu' is not supported; supported: relu, gated-gelu")
  tf_.check_one_line_error(lambda: opened(relative_attention_num_buckets=16).params(),
                           r"tensor 'encoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight' "
                           r"has shape \(8, 6\), config\.json implies \(16, 6\)")
  tf_.check_one_line_error(lambda: opened(model_type="gpt2"), r"model_type 'gpt2' is not supported; supported: "
                                                              r".*electra, t5")


def test_lora_merge_export_matches_the_lora_model(t5_dir, tmp_path):
  """lora_merge folds task 1's factors into the kernels; HF runs the export as our LoRA model runs task 1."""
  ids, mask = tf_.padded_batch([30, 4, 17], VOCAB)
  tf_.check_lora_merge(t5_dir, ids, mask, tmp_path, ("query", "key", "value", "out", "wo"), transformers.T5EncoderModel)


def test_init_from_carries_the_trunk_and_its_shared_parts(t5_dir):
  tf_.check_init_from(t5_dir)
