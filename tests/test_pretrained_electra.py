"""model_type 'electra' (the discriminator encoder: BERT layers, narrower embeddings projected to
hidden_size) against HF transformers: hidden states, export, tokenizer ids, every strategy."""

import json
import shutil

import numpy as np
import pytest

import trunk_families as tf_
from mtl_jax.pretrained import checkpoint as ckpt_lib
from mtl_jax.pretrained import store, tokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.xdist_group("pretrained_electra")

VOCAB = 120


def _config(embedding_size):
  return transformers.ElectraConfig(vocab_size=VOCAB, embedding_size=embedding_size, hidden_size=32,
                                    num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                                    max_position_embeddings=40, type_vocab_size=2, hidden_act="gelu")


@pytest.fixture(scope="module")
def electra_dir(tmp_path_factory):
  """A discriminator (ElectraForPreTraining: 'electra.' prefix, a head we ignore) with embedding_size 16 < 32."""
  model = transformers.ElectraForPreTraining(_config(16))
  return tf_.save_random(model, tmp_path_factory.mktemp("electra") / "disc")


@pytest.mark.parametrize("embedding_size", [16, 32])
def test_hidden_states_and_export_match_transformers(embedding_size, electra_dir, tmp_path):
  path = electra_dir if embedding_size == 16 else tf_.save_random(transformers.ElectraModel(_config(32)),
                                                                  tmp_path / "same_width")
  cfg = ckpt_lib.open_checkpoint(path).encoder_config()
  assert (cfg.model_type, cfg.embed_dim, cfg.position_offset) == ("electra", 16 if embedding_size == 16 else 0, 0)
  ids, mask = tf_.padded_batch([11, 4, 8], VOCAB, first_id=2)
  tf_.check_parity_and_export(path, ids, mask, tmp_path, f"electra_e{embedding_size}")
  if embedding_size == 16:
    assert "embeddings_project.weight" in json.dumps(sorted(ckpt_lib.open_checkpoint(path).tensors()))


def test_wordpiece_ids_equal_hf_on_corpus_sentences(tmp_path):
  """ELECTRA ships BERT's WordPiece (vocab.txt): ElectraTokenizerFast's ids, [CLS] pieces [SEP]."""
  from tasks import offline
  minilm = store.resolve("all-MiniLM-L6-v2")
  hf = transformers.ElectraTokenizerFast(vocab=str(minilm / "vocab.txt"), do_lower_case=True)
  hf.save_pretrained(str(tmp_path))
  shutil.copy(minilm / "vocab.txt", tmp_path / "vocab.txt")  # hub ELECTRA ships it (transformers 5 saves json only)
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "electra"}))
  vocab = tokenizer.vocabulary_for(tmp_path)
  texts = [e["text"] for e in offline.examples("rotten_tomatoes", "train")[:200]]
  assert len(hf) == 30522
  assert vocab.add_bos
  tf_.check_ids_and_pairs(vocab, hf, texts, types=True)


@pytest.mark.parametrize("strategy", tf_.STRATEGY_PARAMS)
def test_every_strategy_trains_one_step(strategy, electra_dir):
  tf_.train_one_step(electra_dir, strategy, VOCAB)


def test_config_tensor_disagreement_names_the_tensor(tmp_path, electra_dir):
  bad = tf_.with_config(electra_dir, tmp_path, embedding_size=24)
  tf_.check_one_line_error(lambda: ckpt_lib.open_checkpoint(bad).params(),
                           r"tensor 'electra\.embeddings\.word_embeddings\.weight' has shape \(120, 16\), "
                           r"config\.json implies \(120, 24\)")


def test_lora_merge_export_matches_the_lora_model(electra_dir, tmp_path):
  """lora_merge folds task 1's factors into the kernels; HF runs the export as our LoRA model runs task 1."""
  ids, mask = tf_.padded_batch([11, 4, 8], VOCAB, first_id=2)
  tf_.check_lora_merge(electra_dir, ids, mask, tmp_path, ("query", "key", "value", "out", "wi", "wo"))


def test_pairs_token_types_match_transformers(electra_dir):
  ids, mask = tf_.padded_batch([11, 4, 8], VOCAB, first_id=2)
  types = ((np.arange(ids.shape[1])[None] >= np.array([5, 2, 4])[:, None]) * mask).astype(np.int32)  # b from 5, 2, 4
  tf_.check_token_types(electra_dir, ids, mask, types)


@pytest.mark.matrix  # the BERT layers' init_from path (tests/test_transfer_init_from.py) + the projection
def test_init_from_carries_the_trunk_and_its_embedding_projection(electra_dir):
  tf_.check_init_from(electra_dir)
