"""Sentence pairs encoded natively: ids and token type ids equal HF transformers'
`tokenizer(a, b, truncation=True, max_length=L)` through a registered pair task, for the
WordPiece (MiniLM) and a RoBERTa-style byte-level BPE layout; the joined (T5) form and the
from-scratch SentencePiece layout keep tokens of both texts when the first is long."""

import json

import gin
import numpy as np
import pytest
import tensorflow as tf

from mtl_jax.input import pairs
from mtl_jax.pretrained import settings, store, tokenizer  # noqa: F401  settings: the gin binding
from tasks import offline, registration

transformers = pytest.importorskip("transformers")

LENGTHS = (8, 24, 128)
EDGE = [
    ("A premise with a hypothesis that is empty.", ""),
    ("", "An empty premise."),
    ("", ""),
    ("whitespace only second", "   "),
    ("Café naïve résumé, jalapeño piñata; über Müller — Ångström", "CRÈME BRÛLÉE À LA CARTE øre Þór"),
    ("中文分词测试，还有日本語のテキスト", "한국어도 and English 混合 text"),
    ("word " * 300, "the short second text survives"),
    ("short first", "long second " * 200),
    ("both long " * 80, "equally long " * 80),
    ("I ❤️ NY 😂😂 #blessed", "literal [SEP] and [CLS] in text"),
]


def _pairs():
  rotten = [e["text"] for e in offline.examples("rotten_tomatoes", "train")[:1400]]
  tweets = [e["text"] for e in offline.examples("vader_tweets", "train")[:600]]
  bbc = [e["text"] for e in offline.examples("bbc_topic", "train")[:40]]
  out = list(zip(rotten[0::2], rotten[1::2])) + list(zip(tweets[0::2], tweets[1::2]))
  out += [(b, t) for b, t in zip(bbc, tweets)]  # a whole article first: very long a
  out += [(t, s.split(". ")[0]) for t, s in zip(rotten[:100], bbc)]
  return out + EDGE


PAIRS = _pairs()
FEW = PAIRS[:-len(EDGE)][::12] + EDGE  # the default suite's sample (~100 pairs); all of PAIRS under -m matrix


def _register(name, pairs=PAIRS):
  registration.add_task(name, kind="classification", vocabulary=offline.VOCABULARY,
                        examples_fn=lambda split: [{"text": f"{a} | {b}", "texts": [a, b], "label": 0}
                                                   for a, b in pairs],
                        label_names=("no", "yes"), text_fields=("premise", "hypothesis"))
  import seqio
  return seqio.get_mixture_or_task(name)


def _ours(task, length):
  ds = task.get_dataset({"inputs": length}, split="validation", shuffle=False)
  return [(ex["inputs"].tolist(), ex["token_type"].tolist()) for ex in ds.as_numpy_iterator()]


def _check_equal(task, hf, checkpoint, pairs):
  gin.bind_parameter("pretrained.checkpoint", str(checkpoint))
  compared = 0
  for length in LENGTHS:
    got = _ours(task, length)
    assert len(got) == len(pairs)
    for (a, b), (ids, types) in zip(pairs, got):
      want = hf(a, b, truncation=True, max_length=length, return_token_type_ids=True)
      assert ids == want["input_ids"], (length, a[:60], b[:60])
      assert types == want["token_type_ids"], (length, a[:60], b[:60])
      compared += 1
  return compared


@pytest.mark.parametrize("pairs", [pytest.param(PAIRS, marks=pytest.mark.matrix, id="all"), pytest.param(FEW, id="few")])
def test_wordpiece_pairs_equal_hf(clean_gin, pairs):
  hf = transformers.AutoTokenizer.from_pretrained(str(store.resolve("all-MiniLM-L6-v2")))
  task = _register("pair_probe_wordpiece", pairs)
  assert len(PAIRS) >= 1000 and len(FEW) >= 90
  assert _check_equal(task, hf, "all-MiniLM-L6-v2", pairs) == len(pairs) * len(LENGTHS)
  long_a = _ours(task, 24)[pairs.index(EDGE[6])]
  b_ids = hf("the short second text survives", add_special_tokens=False)["input_ids"]
  assert long_a[0][-len(b_ids) - 2:] == [102] + b_ids + [102] and len(long_a[0]) == 24  # all of b kept
  assert long_a[1] == [0] * (24 - len(b_ids) - 1) + [1] * (len(b_ids) + 1)


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
  """A small RoBERTa-style byte-level BPE trained on corpus text, saved as an HF checkpoint dir."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  text = [a for a, _ in PAIRS[:400]]
  tok.train_from_iterator(text, trainers.BpeTrainer(
      vocab_size=700, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
  path = tmp_path_factory.mktemp("ckpt") / "roberta"
  path.mkdir()
  tok.save(str(path / "tokenizer.json"))
  (path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
  return path


@pytest.mark.parametrize("pairs", [pytest.param(PAIRS, marks=pytest.mark.matrix, id="all"), pytest.param(FEW, id="few")])
def test_bpe_pairs_equal_hf(clean_gin, roberta_dir, pairs):
  hf = transformers.PreTrainedTokenizerFast(
      tokenizer_file=str(roberta_dir / "tokenizer.json"), bos_token="<s>", eos_token="</s>", sep_token="</s>",
      cls_token="<s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
  assert hf("a", "b")["input_ids"][:2] == [0, hf("a", add_special_tokens=False)["input_ids"][0]]
  assert tokenizer.vocabulary_for(roberta_dir).pair_layout() == ([0], [2, 2], [2], 0)
  task = _register("pair_probe_bpe", pairs)
  assert _check_equal(task, hf, roberta_dir, pairs) == len(pairs) * len(LENGTHS)


def test_longest_first_is_hf_rule_and_water_fill_cuts_longest():
  cases = [(3, 4, 10), (30, 2, 10), (2, 30, 10), (30, 30, 10), (30, 31, 11), (31, 30, 11), (0, 50, 7), (6, 6, 0)]
  for na, nb, budget in cases:
    ka, kb = (int(x) for x in pairs.longest_first(na, nb, budget))
    # the HF rule written out independently: cut one token at a time from the longer (ties: the second)
    # then HF's halving gives the odd token to the longer one
    if na + nb <= budget:
      want = (na, nb)
    else:
      short = min(na, nb)
      if short <= budget - short:
        want = (na, budget - na) if na <= nb else (budget - nb, nb)
      else:
        half, odd = budget // 2, budget // 2 + budget % 2
        want = (odd, half) if na > nb else (half, odd)
    assert (ka, kb) == want, (na, nb, budget)
  kept = pairs.water_fill(tf.constant([50, 3, 20]), 20).numpy().tolist()
  assert kept == [8, 3, 9] and sum(kept) == 20  # cap 8, the odd token to the last long text
  assert pairs.water_fill(tf.constant([5, 3]), 20).numpy().tolist() == [5, 3]


def test_joined_and_scratch_layouts_keep_both_texts(clean_gin):
  """#26 item 3: a first text alone longer than the length still leaves tokens of the second."""
  long_a, b = "word " * 300, "opposite hypothesis here"
  registration.add_task("pair_probe_join", kind="classification", vocabulary=offline.VOCABULARY,
                        examples_fn=lambda split: [{"text": "x", "texts": [long_a, b], "label": 0}],
                        label_names=("no", "yes"), text_fields=("premise", "hypothesis"), pair_format="join")
  native = _register("pair_probe_scratch", FEW)
  import seqio
  spm = offline.VOCABULARY.default
  (ids, types), = _ours(seqio.get_mixture_or_task("pair_probe_join"), 32)
  b_ids = list(spm.encode(b))
  assert len(ids) == 32 and ids[-1] == spm.eos_id and set(types) == {0}
  assert ids[-1 - len(b_ids):-1] == b_ids  # all of the short second text
  assert ids[:len(spm.encode("premise:"))] == list(spm.encode("premise:"))
  got = dict(zip(FEW, _ours(native, 32)))[EDGE[6]]
  b_ids = list(spm.encode(EDGE[6][1]))
  # from scratch: a </s> b </s>, segments 0 / 1
  assert got[0][-len(b_ids) - 1:] == b_ids + [spm.eos_id] and len(got[0]) == 32
  assert got[1] == [0] * (32 - len(b_ids) - 1) + [1] * (len(b_ids) + 1)
  assert got[0][32 - len(b_ids) - 2] == spm.eos_id


def test_token_types_reach_the_embedding():
  """The converter's token_type_ids select the token-type embedding row (BERT-style config)."""
  import jax
  from mtl_jax.models.encoder import EncoderConfig, Embedder
  cfg = EncoderConfig(d_model=8, num_heads=2, mlp_dim=16, num_layers=1, max_len=8, vocab_size=20,
                      type_vocab_size=2)
  emb = Embedder(cfg)
  ids = np.array([[3, 4, 5, 6]], np.int32)
  types = np.array([[0, 0, 1, 1]], np.int32)
  import flax.linen as nn
  params = nn.meta.unbox(emb.init(jax.random.PRNGKey(0), ids))
  table = np.asarray(params["params"]["token_type"])
  diff = np.asarray(emb.apply(params, ids, True, types)) - np.asarray(emb.apply(params, ids, True))
  np.testing.assert_allclose(diff[0, :2], 0, atol=1e-6)
  np.testing.assert_allclose(diff[0, 2:], np.broadcast_to(table[1] - table[0], (2, 8)), atol=1e-6)


def test_truncation_counts_per_task(clean_gin):
  from mtl_jax.input import truncation
  task = _register("pair_probe_count", FEW)
  full = [len(ex["inputs"]) for ex in task.get_dataset(None, split="validation", shuffle=False,
                                                       trim_output_features=False).as_numpy_iterator()]
  found = truncation.counts(["pair_probe_count"], 24)
  assert found == {"pair_probe_count": {"validation": (sum(n > 24 for n in full), len(FEW))}}
  assert 0 < found["pair_probe_count"]["validation"][0] < len(FEW)
  assert truncation.line(found, 24).startswith(f"truncated at inputs=24: pair_probe_count "
                                              f"{found['pair_probe_count']['validation'][0]}/{len(FEW)} validation")


def test_segments_gin_gives_the_scratch_encoder_segment_embeddings(clean_gin):
  from mtl_jax.models import encoder
  gin.parse_config_files_and_bindings(["gin/models/tiny.gin", "gin/models/segments.gin"], [])
  assert encoder.EncoderConfig(vocab_size=50).type_vocab_size == 2


def test_minilm_on_native_pairs_matches_transformers_with_token_types(clean_gin):
  """The task pipeline's pair ids and token types through our MiniLM trunk == transformers' BertModel."""
  torch = pytest.importorskip("torch")
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from mtl_jax.input import features as features_lib
  from mtl_jax.models.encoder import Embedder
  from mtl_jax.pretrained import encode
  from mtl_jax.sharing.hard import HardSharing

  class PairEncoder(nn.Module):  # encode.Encoder, with the token types passed on
    config: object

    @nn.compact
    def __call__(self, ids, mask, types):
      x = Embedder(self.config, name="embedder")(ids, True, types)
      return HardSharing(self.config, 1, name="trunk")(x, mask, jnp.zeros(ids.shape[:1], jnp.int32), True)

  pairs_ = [("A man is playing a guitar.", "Someone plays music."), ("Short.", "A much longer second sentence here."),
            EDGE[4]]
  registration.add_task("pair_probe_model", kind="classification", vocabulary=offline.VOCABULARY,
                        examples_fn=lambda split: [{"text": "x", "texts": [a, b], "label": 0} for a, b in pairs_],
                        label_names=("no", "yes"), text_fields=("premise", "hypothesis"))
  gin.bind_parameter("pretrained.checkpoint", "all-MiniLM-L6-v2")
  import seqio
  ds = seqio.get_mixture_or_task("pair_probe_model").get_dataset({"inputs": 32}, split="validation", shuffle=False)
  ds = features_lib.EncoderFeatureConverter(["pair_probe_model"])(ds, {"inputs": 32})
  rows = list(ds.as_numpy_iterator())
  ids, mask, types = (np.stack([r[k] for r in rows]) for k in ("input_ids", "input_mask", "token_type_ids"))
  assert (types == 1).any(axis=1).all()
  minilm = encode.TextEncoder("all-MiniLM-L6-v2")
  ours = np.asarray(jax.jit(lambda p, i, m, t: PairEncoder(minilm.config).apply({"params": p}, i, m, t))(
      minilm.params, ids, mask, types))
  model = transformers.AutoModel.from_pretrained(str(minilm.checkpoint.path)).eval()
  with torch.no_grad():
    want = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                 token_type_ids=torch.tensor(types, dtype=torch.long)).last_hidden_state.numpy()
    no_types = model(input_ids=torch.tensor(ids, dtype=torch.long),
                     attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()
  real = mask.astype(bool)
  assert np.abs(ours - want)[real].max() <= 1e-4
  assert np.abs(no_types - want)[real].max() > 1e-2  # the token types matter
