"""model_type 'deberta-v2' (DeBERTa-v2 / v3: disentangled attention over one shared, LayerNormed,
log-bucketed relative table, no absolute positions) against HF transformers: hidden states,
export, tokenizer ids (tokenizer.json and spm.model alone), every strategy, bad input."""

import json
import shutil

import numpy as np
import pytest

import trunk_families as tf_
from mtl_jax.models import deberta
from mtl_jax.pretrained import checkpoint as ckpt_lib
from mtl_jax.pretrained import tokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.xdist_group("pretrained_deberta")

VOCAB = 100


def _config(embedding_size=32, buckets=8):
  """deberta-v3's attention variant at toy size: 8 position buckets over 64 positions (a 30-token input
  reaches the log buckets), or no buckets with max_relative_positions 12 and an embed_proj (24 -> 32)."""
  return transformers.DebertaV2Config(
      vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
      max_position_embeddings=64, relative_attention=True, position_buckets=buckets,
      max_relative_positions=-1 if buckets > 0 else 12, pos_att_type=["p2c", "c2p"], share_att_key=True,
      position_biased_input=False, norm_rel_ebd="layer_norm", type_vocab_size=0, embedding_size=embedding_size,
      hidden_act="gelu", layer_norm_eps=1e-7, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def v3_dir(tmp_path_factory):
  return tf_.save_random(transformers.DebertaV2Model(_config()), tmp_path_factory.mktemp("deberta") / "v3")


def test_log_buckets_match_transformers():
  torch = pytest.importorskip("torch")
  from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position
  rel = torch.arange(300)[:, None] - torch.arange(300)[None, :]
  want = make_log_bucket_position(rel, 256, 512).long().numpy()
  np.testing.assert_array_equal(deberta.relative_positions(300, 256, 512), want)
  assert deberta.relative_positions(300, 256, 512).max() > 128  # log buckets reached


@pytest.mark.parametrize("variant", ["v3", "proj_no_buckets"])
def test_hidden_states_and_export_match_transformers(variant, v3_dir, tmp_path):
  path = v3_dir if variant == "v3" else tf_.save_random(
      transformers.DebertaV2ForSequenceClassification(_config(24, -1)), tmp_path / "proj")  # 'deberta.' prefix
  cfg = ckpt_lib.open_checkpoint(path).encoder_config()
  assert (cfg.model_type, cfg.embed_dim, deberta.span(cfg)) == (("deberta-v2", 0, 8) if variant == "v3" else
                                                                ("deberta-v2", 24, 12))
  ids, mask = tf_.padded_batch([30, 4, 17], VOCAB, first_id=1)
  tf_.check_parity_and_export(path, ids, mask, tmp_path, f"deberta_{variant}")


def test_short_inputs_read_only_the_rows_they_reach(v3_dir):
  """A 5-token input reaches 9 of the 16 table rows (deberta.py projects only those): HF's states still."""
  ids, mask = tf_.padded_batch([5, 3], VOCAB, first_id=1)
  rel = deberta.relative_positions(5, 8, 64)
  assert np.abs(rel).max() == 4  # rows 8 - 4 .. 8 + 4
  diff = tf_.real_diff(tf_.ours(v3_dir, ids, mask), tf_.hf_hidden(transformers.AutoModel.from_pretrained(str(v3_dir)),
                                                                  ids, mask), mask)
  assert diff <= tf_.TOL


def test_the_relative_table_is_one_param_shared_by_every_layer(v3_dir):
  assert tf_.position_params(v3_dir) == ["trunk/trunk/positions/embedding", "trunk/trunk/positions/ln/LayerNorm_0/bias",
                   "trunk/trunk/positions/ln/LayerNorm_0/scale"]


def test_sentencepiece_ids_equal_hf_on_corpus_sentences(tmp_path):
  """A unigram spm.model with DeBERTa's specials trained here from corpus text (no real one ships offline);
  HF's DeBERTa-v2 tokenizer converted from it. Ours through tokenizer.json and through spm.model alone
  give HF's [CLS] pieces [SEP]."""
  import sentencepiece as spm
  from tasks import offline
  train = [e["text"] for e in offline.examples("rotten_tomatoes", "train")[:400]]
  texts = [e["text"] for e in offline.examples("rotten_tomatoes", "validation")[:150]] + [
      "Zwölf Boxkämpfer jagen Viktor", "tabs\tand  spaces", "", "😂 #tag"]
  spm_dir = tmp_path / "spm"
  spm_dir.mkdir()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(train), model_prefix=str(spm_dir / "spm"), vocab_size=300, pad_id=0, pad_piece="[PAD]",
      bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]",
      user_defined_symbols=["[MASK]"], model_type="unigram", minloglevel=2)
  (spm_dir / "config.json").write_text(json.dumps({"model_type": "deberta-v2"}))
  hf = transformers.AutoTokenizer.from_pretrained(str(spm_dir))
  fast_dir = tmp_path / "fast"
  hf.save_pretrained(str(fast_dir))
  shutil.copy(spm_dir / "config.json", fast_dir / "config.json")
  assert (fast_dir / "tokenizer.json").is_file() and not (fast_dir / "spm.model").exists()
  for directory in (fast_dir, spm_dir):
    vocab = tokenizer.vocabulary_for(directory)
    assert (vocab.add_bos, vocab.bos_id, vocab.eos_id, vocab.pad_id) == (True, 1, 2, 0)
    tf_.check_ids_and_pairs(vocab, hf, texts, types=True)
  assert any(3 in hf(t)["input_ids"] for t in texts)  # [UNK] occurs: unseen characters are compared too
  assert tokenizer.vocabulary_for(fast_dir).encode("a [SEP] b") == hf("a [SEP] b")["input_ids"][1:-1]


@pytest.mark.parametrize("strategy", tf_.STRATEGY_PARAMS)
def test_every_strategy_trains_one_step(strategy, v3_dir):
  tf_.train_one_step(v3_dir, strategy, VOCAB)


@pytest.mark.parametrize("field,value,match", [
    ("conv_kernel_size", 3, r"attention variant conv_kernel_size=3 is not supported; supported: conv_kernel_size=0"),
    ("share_att_key", False, r"share_att_key=False is not supported; supported: share_att_key=True"),
    ("pos_att_type", ["c2p"], r"pos_att_type \['c2p'\] is not supported; supported: \['p2c', 'c2p'\]"),
])
def test_unsupported_attention_variants_name_what_is_supported(tmp_path, v3_dir, field, value, match):
  tf_.check_one_line_error(lambda: ckpt_lib.open_checkpoint(tf_.with_config(v3_dir, tmp_path, **{field: value})), match)


def test_config_tensor_disagreement_names_the_tensor(tmp_path, v3_dir):
  bad = tf_.with_config(v3_dir, tmp_path, position_buckets=16)
  tf_.check_one_line_error(lambda: ckpt_lib.open_checkpoint(bad).params(),
                           r"tensor 'encoder\.rel_embeddings\.weight' has shape \(16, 32\), config\.json implies "
                           r"\(32, 32\)")


def test_lora_merge_export_matches_the_lora_model(v3_dir, tmp_path):
  """lora_merge folds task 1's factors into the kernels; HF runs the export as our LoRA model runs task 1."""
  ids, mask = tf_.padded_batch([30, 4, 17], VOCAB, first_id=1)
  tf_.check_lora_merge(v3_dir, ids, mask, tmp_path, ("query", "key", "value", "out", "wi", "wo"))


def test_pairs_token_types_match_transformers(tmp_path):
  """DeBERTa-v2 layouts with type_vocab_size 2 (v3 has none) embed the pair's second text as type 1."""
  config = _config()
  config.type_vocab_size = 2
  path = tf_.save_random(transformers.DebertaV2Model(config), tmp_path / "typed")
  ids, mask = tf_.padded_batch([30, 4, 17], VOCAB, first_id=1)
  types = ((np.arange(ids.shape[1])[None] >= np.array([12, 2, 9])[:, None]) * mask).astype(np.int32)
  tf_.check_token_types(path, ids, mask, types)


@pytest.mark.matrix
def test_quickstart_run_from_a_deberta_v3_layout_checkpoint(tmp_path, capsys):
  """The whole quickstart (500 steps, 3 offline tasks) through the binary's main() from a random-init
  DeBERTa-v3-layout checkpoint with its own spm.model; run_spec records the layout; the trained trunk
  exports and transformers loads it."""
  import sentencepiece as spm
  from mtl_jax import train
  from mtl_jax.pretrained import export
  from tasks import offline
  ckpt = tmp_path / "ckpt"
  train_text = [e["text"] for name in ("rotten_tomatoes", "bbc_topic", "vader_tweets")
                for e in offline.examples(name, "train")[:300]]
  ckpt.mkdir()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(train_text), model_prefix=str(ckpt / "spm"), vocab_size=1000, pad_id=0, pad_piece="[PAD]",
      bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]",
      user_defined_symbols=["[MASK]"], model_type="unigram", minloglevel=2)
  config = _config()
  config.vocab_size, config.max_position_embeddings = 1000, 128
  tf_.save_random(transformers.DebertaV2Model(config), ckpt)
  model_dir = tmp_path / "run"
  assert train.main(["--gin_file=gin/runs/quickstart.gin", f"--gin.pretrained.checkpoint={ckpt}",
                     f"--gin.MODEL_DIR={model_dir}", "--gin.trainer.train.eval_batch_size=256"]) == 0
  spec = json.loads((model_dir / "run_spec.json").read_text())
  assert (spec["encoder"]["model_type"], spec["encoder"]["relative_buckets"], spec["encoder"]["vocab_size"]) == (
      "deberta-v2", 8, 1000)
  results = json.loads((model_dir / "results.json").read_text())
  assert results["step"] == 500 and np.isfinite(results["average"])
  out = export.export_model_dir(model_dir, tmp_path / "exported")
  model, info = transformers.AutoModel.from_pretrained(str(out), output_loading_info=True)
  assert not info["missing_keys"] and (out / "spm.model").is_file()


def test_init_from_carries_the_trunk_and_its_shared_parts(v3_dir):
  tf_.check_init_from(v3_dir)
