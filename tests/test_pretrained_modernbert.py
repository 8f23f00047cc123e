"""model_type 'modernbert' (no biases, rotary positions with two bases, GeGLU, a global layer every
n-th and sliding-window local layers otherwise) against HF transformers: hidden states, export,
tokenizer ids, every strategy, bad input."""

import json

import pytest

import trunk_families as tf_
from mtl_jax.pretrained import checkpoint as ckpt_lib
from mtl_jax.pretrained import tokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.xdist_group("pretrained_modernbert")

VOCAB = 100


def _config(**extra):
  """4 layers, global at 0 and 3 (every 3rd), local window |q - k| <= 4 (local_attention 8): a 30-token
  input is cut by the window on layers 1-2 and not on 0 and 3."""
  return transformers.ModernBertConfig(
      vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48,
      local_attention=8, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, **extra)


@pytest.fixture(scope="module")
def mb_dir(tmp_path_factory):
  return tf_.save_random(transformers.ModernBertModel(_config()), tmp_path_factory.mktemp("modernbert") / "mb")


def test_hidden_states_and_export_match_transformers(mb_dir, tmp_path):
  cfg = ckpt_lib.open_checkpoint(mb_dir).encoder_config()
  assert (cfg.model_type, cfg.global_every, cfg.sliding_window, cfg.rope_theta, cfg.rope_theta_local) == (
      "modernbert", 3, 4, 160000.0, 10000.0)
  ids, mask = tf_.padded_batch([30, 4, 17], VOCAB, first_id=1)
  tf_.check_parity_and_export(mb_dir, ids, mask, tmp_path, "modernbert")


def test_the_window_matters(mb_dir, tmp_path):
  """The same weights read as all-global layers give other states: the local mask is really applied."""
  glob = tf_.with_config(mb_dir, tmp_path, layer_types=["full_attention"] * 4)
  ids, mask = tf_.padded_batch([30, 4, 17], VOCAB, first_id=1)
  assert tf_.real_diff(tf_.ours(glob, ids, mask), tf_.ours(mb_dir, ids, mask), mask) > 1e-3
  want = tf_.hf_hidden(transformers.AutoModel.from_pretrained(str(glob)), ids, mask)
  assert tf_.real_diff(tf_.ours(glob, ids, mask), want, mask) <= tf_.TOL


def test_bpe_ids_equal_hf_on_corpus_sentences(tmp_path):
  """A byte-level BPE with ModernBERT's [CLS] $A [SEP] template, trained here from corpus text."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
  from tasks import offline
  train = [e["text"] for e in offline.examples("rotten_tomatoes", "train")[:300]]
  texts = [e["text"] for e in offline.examples("rotten_tomatoes", "validation")[:150]] + ["😂 #tag", "", "a [SEP] b"]
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(train, trainers.BpeTrainer(vocab_size=500, special_tokens=["[PAD]", "[CLS]", "[SEP]",
                                                                                     "[UNK]", "[MASK]"],
                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                     special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
  hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]",
                                            pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]")
  hf.save_pretrained(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "modernbert"}))
  vocab = tokenizer.vocabulary_for(tmp_path)
  assert (vocab.add_bos, vocab.bos_id, vocab.eos_id) == (True, 1, 2)
  tf_.check_ids_and_pairs(vocab, hf, texts)


@pytest.mark.parametrize("strategy", tf_.STRATEGY_PARAMS)
def test_every_strategy_trains_one_step(strategy, mb_dir):
  tf_.train_one_step(mb_dir, strategy, VOCAB)


@pytest.mark.parametrize("field,value,match", [
    ("attention_bias", True, r"ModernBERT attention_bias=True is not supported; supported: attention_bias=False"),
    ("layer_types", ["sliding_attention"] * 4, r"layer_types .* is not supported; supported: full_attention on"),
])
def test_unsupported_variants_name_what_is_supported(tmp_path, mb_dir, field, value, match):
  tf_.check_one_line_error(lambda: ckpt_lib.open_checkpoint(tf_.with_config(mb_dir, tmp_path, **{field: value})), match)


def test_config_tensor_disagreement_names_the_tensor(tmp_path, mb_dir):
  bad = tf_.with_config(mb_dir, tmp_path, intermediate_size=40)
  tf_.check_one_line_error(lambda: ckpt_lib.open_checkpoint(bad).params(),
                           r"tensor 'layers\.0\.mlp\.Wi\.weight' has shape \(96, 32\), config\.json implies \(80, 32\)")


def test_lora_merge_export_matches_the_lora_model(mb_dir, tmp_path):
  """lora_merge folds task 1's factors into the kernels; HF runs the export as our LoRA model runs task 1."""
  ids, mask = tf_.padded_batch([30, 4, 17], VOCAB, first_id=1)
  tf_.check_lora_merge(mb_dir, ids, mask, tmp_path, ("query", "key", "value", "out", "wo"))


def test_init_from_carries_the_trunk_and_its_shared_parts(mb_dir):
  tf_.check_init_from(mb_dir)
