"""A checkpoint's tokenizer as a seqio Vocabulary: its ids are HF `tokenizers`' ids, in-graph
and off, on real offline text, through the tagging path and through the registered tasks."""

import json
import pickle

import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from mtl_jax.input import input_pipeline as ip
from mtl_jax.data import corpora
from mtl_jax.pretrained import settings, store, tokenizer  # noqa: F401  settings: the gin binding
from tasks import offline, registration

CLS, SEP, UNK = 101, 102, 100
HAND = [
    "Café naïve résumé, jalapeño piñata; über Müller — Ångström ÅSA øre Þór",
    "CRÈME BRÛLÉE À LA CARTE", "İstanbul straße ﬁnale Œuvre ΟΔΟΣ ΣΙΣΥΦΟΣ Москва",
    "I ❤️ NY 😂😂😂 👍🏽 👨‍👩‍👧 #blessed @user_1 http://t.co/xYz",
    "中文分词测试，还有日本語のテキストとカタカナ。한국어도",
    "tab\there\nnewline\r\nnul\x00bell\x07 zero\u200bwidth soft\u00adhyphen nbsp\u00a0x \ufffd\ufeff",
    "multiple     spaces   and\u3000ideographic\u2003em spaces",
    "a" * 101 + " short " + "é" * 100 + " " + "b" * 100,
    "Pneumonoultramicroscopicsilicovolcanoconiosis-antidisestablishmentarianism!!!",
    "don't won't y'all ... ?!?! (parens) [brackets] {braces} $100 50% a+b=c <tag> ~tilde^ `tick`",
    "literal [SEP] and [CLS]x[MASK] [unused1] [unk] [UNK]", "", "   ", "\x00\x01",
    "«guillemets» „quotes“ ‘single’ – en — em … ellipsis ¿qué? ¡sí!",
]


@pytest.fixture(scope="module")
def minilm():
  return store.resolve("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def hf(minilm):
  tok = Tokenizer.from_file(str(minilm / "tokenizer.json"))
  tok.no_truncation()  # the file ships with truncation and padding at 128
  tok.no_padding()
  return tok


@pytest.fixture(scope="module")
def vocab(minilm):
  return tokenizer.vocabulary_for(minilm)


@pytest.fixture(scope="module")
def sentences():
  bbc = [e["text"] for e in offline.examples("bbc_topic", "train")]
  rotten = [e["text"] for e in offline.examples("rotten_tomatoes", "train")]
  accented = [t for t in rotten if not t.isascii()]  # curly quotes, dashes, é ó á ç ñ ü ...
  texts = ([e["text"] for e in offline.examples("vader_tweets", "train")[:500]]  # emoticons, #tags
           + accented + rotten[:100]
           + [t.split(". ")[0] for t in bbc[:150]] + bbc[:5]  # 5 whole articles: long inputs
           + [e["text"] for e in offline.examples("wnut16_ner", "train")[:300]]
           + [e["text"] for e in offline.examples("chatterbot_intent", "train")[:50]] + HAND)
  assert len(texts) >= 1300
  return texts


def _in_graph(vocab, texts):
  ds = tf.data.Dataset.from_tensor_slices(texts).map(vocab.encode_tf)
  return [x.tolist() for x in ds.as_numpy_iterator()]


def test_minilm_ids_are_hf_ids_in_graph_and_in_python(vocab, hf, sentences):
  assert (vocab.bos_id, vocab.eos_id, vocab.pad_id, vocab.unk_id, vocab.vocab_size) == (CLS, SEP, 0, UNK, 30522)
  assert vocab.add_bos
  # the corpus really exercises the hard cases (emoji: only HAND; the offline tweets have emoticons)
  assert sum(not t.isascii() for t in sentences) >= 500
  assert sum(any(c.isalpha() and not c.isascii() for c in t) for t in sentences) >= 90
  expected = [e.ids for e in hf.encode_batch(sentences)]
  assert max(map(len, expected)) > 512  # the whole articles: no truncation anywhere
  assert any(e.count(UNK) for e in expected)
  graph = _in_graph(vocab, sentences)
  for text, got, want in zip(sentences, graph, expected):
    assert [CLS] + got + [SEP] == want, text
  for text, want in zip(sentences, expected):
    assert [CLS] + list(vocab.encode(text)) + [SEP] == want, text


def test_decode_reads_back_like_hf(vocab, hf, sentences):
  plain = [t for t in sentences[:200] if UNK not in hf.encode(t).ids]
  assert len(plain) > 100
  for text in plain:
    ids = hf.encode(text).ids
    assert vocab.decode(ids) == hf.decode(ids), text  # [CLS] / [SEP] dropped, '##' glued
    again = vocab.decode_tf(tf.constant(ids)).numpy().decode("utf-8")
    assert [CLS] + list(vocab.encode(again)) + [SEP] == ids, text  # the in-graph text re-encodes the same


def test_hand_cases_behave_as_hf_documents(vocab, hf):
  enc = lambda s: vocab.encode(s)  # noqa: E731
  assert enc("Café Ångström") == enc("cafe angstrom")  # lower-cased, accents stripped
  assert enc("a" * 101) == [UNK] and enc("a" * 100) != [UNK]  # HF: > 100 characters is one [UNK]
  assert enc("x [SEP] y")[1] == SEP and enc("[sep]") != [SEP]  # special tokens match the raw text
  assert len(enc("中文")) == 2  # each CJK ideograph is a word
  assert enc("a\u200bb") == enc("ab") and enc("a\tb") == enc("a b")  # format chars go, tabs are spaces


def test_unicode_sweep_matches_hf_in_the_scripts_people_write(vocab, hf):
  """Each code point between letters; exact outside the scripts whose Unicode data changed
  since the tables compiled into `tokenizers` (see the tokenizer module's docstring)."""
  common = [(0x0, 0x5FF), (0x1E00, 0x2DFF), (0x3000, 0xA4FF), (0xAC00, 0xD7FF), (0xF900, 0xFFFF),
            (0x1F000, 0x1FAFF), (0x20000, 0x2A6DF)]
  cps = [c for lo, hi in common for c in range(lo, hi + 1) if not 0xD800 <= c <= 0xDFFF]
  texts = [f"The {chr(c)}x{chr(c)} B" for c in cps]
  got = vocab._encode_batch(tf.constant(texts)).to_list()
  want = [e.ids[1:-1] for e in hf.encode_batch(texts)]
  bad = [hex(c) for c, g, w in zip(cps, got, want) if g != w]
  assert not bad, bad[:20]


def test_words_path_is_hf_pretokenized(vocab, hf):
  words = ["Pneumonoultramicroscopic", "is", "@justinbieber", "", "#hashtagging", "Ñandú", "😂", "[SEP]", "!!"]
  pieces = vocab.encode_tf(tf.constant(words))
  assert isinstance(pieces, tf.RaggedTensor) and pieces.shape[0] == len(words)
  enc = hf.encode(words, is_pretokenized=True, add_special_tokens=False)
  want = [[i for i, w in zip(enc.ids, enc.word_ids) if w == k] for k in range(len(words))]
  assert pieces.to_list() == want
  assert len(want[0]) > 2 and want[3] == []


@pytest.fixture
def toytag(clean_gin):
  words = ["Pneumonoultramicroscopicsilicovolcanoconiosis", "is", "@justinbieber", "#hashtagging",
           "a", "Zzyzx", "Ñandú", "!"]
  tags = [1, 0, 2, 3, 0, 5, 7, 0]
  registration.add_task("toytag_pretrained", kind="tagging", vocabulary=offline.VOCABULARY,
                        label_names=corpora.WNUT_TAGS,
                        examples_fn=lambda split: [{"tokens": words, "tags": tags}])
  yield ip.get_provider("toytag_pretrained"), words, tags
  seqio.TaskRegistry.remove("toytag_pretrained")


def test_tagging_with_cls_shifts_tags_by_one(toytag, hf):
  task, words, tags = toytag
  gin.bind_parameter("pretrained.checkpoint", "all-MiniLM-L6-v2")
  enc = hf.encode(words, is_pretokenized=True)  # [CLS] pieces [SEP], word_ids None on both
  want_tags = [-1 if w is None or (k and enc.word_ids[k - 1] == w) else tags[w]
               for k, w in enumerate(enc.word_ids)]
  assert len(enc.ids) > len(words) + 4  # words really split
  batch = ip.eval_batches(task, (task.name,), {"inputs": 64}, 1)[0]
  n = len(enc.ids)
  assert batch["input_ids"][0, :n].tolist() == enc.ids
  assert batch["tags"][0, :n].tolist() == want_tags
  assert batch["tags"][0, 0] == -1 and batch["input_ids"][0, n - 1] == SEP and batch["tags"][0, n - 1] == -1
  assert (batch["input_ids"][0, n:] == 0).all() and (batch["tags"][0, n:] == -1).all()
  # truncated: [CLS] kept first, [SEP] last (untagged), the rest aligned as before
  length = 12
  short = ip.eval_batches(task, (task.name,), {"inputs": length}, 1)[0]
  assert short["input_ids"][0].tolist() == enc.ids[:length - 1] + [SEP]
  assert short["tags"][0].tolist() == want_tags[:length - 1] + [-1]


def test_registered_task_follows_the_gin_checkpoint(clean_gin, hf):
  task = seqio.get_mixture_or_task("rotten_tomatoes")
  texts = [e["text"] for e in offline.examples("rotten_tomatoes", "validation")[:40]]

  def inputs(length):
    ds = task.get_dataset({"inputs": length}, split="validation", shuffle=False)
    return [ex["inputs"].tolist() for ex in ds.take(len(texts)).as_numpy_iterator()]

  spm = offline.VOCABULARY.default
  sp_ids = inputs(256)
  assert sp_ids == [list(spm.encode(t)) + [1] for t in texts]  # no BOS, EOS = 1: as before
  assert task.output_features["inputs"].vocabulary.vocab_size == spm.vocab_size
  assert not offline.VOCABULARY.add_bos

  gin.bind_parameter("pretrained.checkpoint", "all-MiniLM-L6-v2")
  assert task.output_features["inputs"].vocabulary.vocab_size == 30522
  assert inputs(256) == [e.ids for e in hf.encode_batch(texts)]
  short = inputs(8)
  hf.enable_truncation(8)
  try:
    assert short == [e.ids for e in hf.encode_batch(texts)]  # HF truncation keeps [CLS] and [SEP]
  finally:
    hf.no_truncation()
  assert all(s[0] == CLS and s[-1] == SEP and len(s) == 8 for s in short)

  gin.clear_config()
  assert inputs(256) == sp_ids


def test_run_vocabulary_pickles_compares_and_resolves_late(clean_gin, vocab):
  run_vocab = offline.VOCABULARY
  clone = pickle.loads(pickle.dumps(run_vocab))
  assert clone == run_vocab and hash(clone) == hash(run_vocab)
  assert clone != vocab and clone.encode("hello world") == run_vocab.default.encode("hello world")
  gin.bind_parameter("pretrained.checkpoint", "all-MiniLM-L6-v2")
  assert clone.resolve() is vocab and clone.encode("hello world") == vocab.encode("hello world")
  assert clone.add_bos and clone.bos_id == CLS and clone.eos_id == SEP
  wp = pickle.loads(pickle.dumps(vocab))
  assert wp == vocab and wp.encode("Héllo, wörld!") == vocab.encode("Héllo, wörld!")


# --------------------------------------------------------------- RoBERTa / XLM-R layouts

def _train_text():
  return ([e["text"] for e in offline.examples("rotten_tomatoes", "train")[:300]]
          + [e["text"] for e in offline.examples("vader_tweets", "train")[:200]])


def _checkpoint_dir(path, model_type, tok):
  path.mkdir()
  tok.save(str(path / "tokenizer.json"))
  (path / "config.json").write_text(json.dumps({"model_type": model_type}))
  return path


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
  """A tiny byte-level BPE with RoBERTa's special tokens and post-processor."""
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(_train_text(), trainers.BpeTrainer(
      vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
  return _checkpoint_dir(tmp_path_factory.mktemp("ckpt") / "roberta", "roberta", tok)


@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory):
  """A tiny unigram (Metaspace) with XLM-R's special tokens and a template post-processor."""
  tok = Tokenizer(models.Unigram())
  tok.normalizer = normalizers.NFKC()
  tok.pre_tokenizer = pre_tokenizers.Metaspace()
  tok.decoder = decoders.Metaspace()
  tok.train_from_iterator(_train_text(), trainers.UnigramTrainer(
      vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"))
  tok.post_processor = processors.TemplateProcessing(
      single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
  return _checkpoint_dir(tmp_path_factory.mktemp("ckpt") / "xlmr", "xlm-roberta", tok)


@pytest.mark.parametrize("layout", ["roberta_dir", "xlmr_dir"])
def test_tokenizers_layouts_give_hf_ids(layout, request, sentences):
  path = request.getfixturevalue(layout)
  vocab = tokenizer.vocabulary_for(path)
  assert isinstance(vocab, tokenizer.TokenizersVocabulary) and tokenizer.vocabulary_for(str(path)) is vocab
  hf = Tokenizer.from_file(str(path / "tokenizer.json"))
  assert (vocab.add_bos, vocab.bos_id, vocab.eos_id, vocab.pad_id) == (True, 0, 2, 1)
  assert vocab.unk_id == (3 if layout == "xlmr_dir" else None)  # byte-level BPE has no unknowns
  assert vocab.vocab_size == hf.get_vocab_size()
  texts = sentences[:300] + HAND
  want = [e.ids for e in hf.encode_batch(texts)]
  if layout == "xlmr_dir":
    assert any(3 in w for w in want)  # unseen characters (emoji, CJK) are <unk>
  for text, got, w in zip(texts, _in_graph(vocab, texts), want):
    assert [0] + got + [2] == w, text
    assert [0] + list(vocab.encode(text)) + [2] == w, text
  words = ["Hello", "wörld", "", "😂", "again"]
  enc = hf.encode(words, is_pretokenized=True, add_special_tokens=False)
  assert vocab.encode_tf(tf.constant(words)).to_list() == [
      [i for i, w in zip(enc.ids, enc.word_ids) if w == k] for k in range(len(words))]
  assert pickle.loads(pickle.dumps(vocab)).encode("a test") == vocab.encode("a test")
  assert vocab.decode(want[0]) == hf.decode(want[0]) and len(vocab.decode(want[0])) > 10


def test_registered_task_with_a_roberta_checkpoint(clean_gin, roberta_dir):
  hf = Tokenizer.from_file(str(roberta_dir / "tokenizer.json"))
  gin.bind_parameter("pretrained.checkpoint", str(roberta_dir))
  task = seqio.get_mixture_or_task("rotten_tomatoes")
  texts = [e["text"] for e in offline.examples("rotten_tomatoes", "validation")[:20]]
  ds = task.get_dataset({"inputs": 512}, split="validation", shuffle=False).take(len(texts))
  assert [ex["inputs"].tolist() for ex in ds.as_numpy_iterator()] == [e.ids for e in hf.encode_batch(texts)]
  assert task.output_features["inputs"].vocabulary.vocab_size == hf.get_vocab_size()


# --------------------------------------------------------------------------- bad inputs

def _fake_dir(tmp_path, name, model_type, files=()):
  path = tmp_path / name
  path.mkdir()
  (path / "config.json").write_text(json.dumps({"model_type": model_type}))
  for f in files:
    (path / f).write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
  return path


@pytest.mark.parametrize("name,model_type,files,match", [
    ("no_vocab", "bert", ("tokenizer_config.json",), r"no_vocab.*has no vocab\.txt"),
    ("no_json", "roberta", ("vocab.txt",), r"no_json.*has no tokenizer\.json"),
    ("gpt", "gpt2", ("vocab.txt", "tokenizer.json"), r"gpt.*unsupported model_type 'gpt2'.*bert"),
])
def test_bad_checkpoint_dirs_say_what_is_missing(tmp_path, name, model_type, files, match):
  path = _fake_dir(tmp_path, name, model_type, files)
  if "tokenizer_config.json" in files:
    (path / "tokenizer_config.json").write_text("{}")
  with pytest.raises(ValueError, match=match) as err:
    tokenizer.vocabulary_for(path)
  assert "\n" not in str(err.value)


def test_missing_config_json_is_named(tmp_path):
  with pytest.raises(ValueError, match=r"has no config\.json") as err:
    tokenizer.vocabulary_for(tmp_path)
  assert "\n" not in str(err.value)
