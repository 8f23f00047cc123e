"""Multiple choice, per-pair layout (heads/multiple_choice.py, models/choice_pairs.py): each (context,
choice_i) pair of an example is encoded on its own inside the example's row. Checked against an
independent computation: every pair alone in its own unpacked row through the same model; the pairs'
ids / token type ids against HF's `tokenizer(context, choice)`; 2, 3 and 4 choices in one batch."""

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio

from mtl_jax.heads import multiple_choice
from mtl_jax.input import features as features_lib
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.models.multitask import build_model
from mtl_jax.pretrained import settings, store  # noqa: F401  settings: the gin binding
from tasks import offline, registration

ITEMS = [
    {"text": "The sky is", "choices": ["blue", "a sandwich"], "label": 0},
    {"text": "Two plus two is", "choices": ["five", "four", "a cat"], "label": 1},
    {"text": "Paris is in", "choices": ["Japan", "Peru", "France", "the sea"], "label": 2},
    {"text": "Ice is", "choices": ["hot", "cold", "loud"], "label": 1},
]
LENGTH = 48


def _batch(name, items=ITEMS, length=LENGTH):
  registration.add_task(name, kind="multiple_choice", vocabulary=offline.VOCABULARY,
                        label_names=("c1", "c2", "c3", "c4"), examples_fn=lambda split: items)
  ds = seqio.get_mixture_or_task(name).get_dataset({"inputs": length}, split="validation", shuffle=False)
  ds = features_lib.EncoderFeatureConverter([name])(ds, {"inputs": length})
  rows = list(ds.as_numpy_iterator())
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("sharing", ["hard", pytest.param("mmoe", marks=pytest.mark.matrix)])
def test_per_pair_logits_equal_each_pair_alone_in_its_own_row(clean_gin, sharing):
  batch = _batch("mc_pairs_alone")
  vocab = offline.VOCABULARY.default.vocab_size
  config = EncoderConfig(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, max_len=64, vocab_size=vocab,
                         type_vocab_size=2, pooling="mean")
  model = build_model(config, sharing, [1])
  params = {"params": model.init(jax.random.key(0), {k: jnp.asarray(v) for k, v in batch.items()})["params"]}
  out = model.apply(params, {k: jnp.asarray(v) for k, v in batch.items()})
  scores, present = multiple_choice.choice_scores(out.token_logits[..., 0], jnp.asarray(batch["tags"]))
  loss = np.asarray(multiple_choice.MultipleChoice().example_loss(out, batch))
  assert present.sum(1).tolist() == [len(item["choices"]) for item in ITEMS]  # 2, 3, 4, 3 in one batch
  rows, where = {k: [] for k in ("input_ids", "token_type_ids", "input_mask")}, []
  for i, item in enumerate(ITEMS):  # independent: each pair j in its own unpacked row
    for j in range(len(item["choices"])):
      on = batch["tags"][i] == multiple_choice.pair_tag(j)
      n = int(on.sum())
      for key, value in (("input_ids", batch["input_ids"][i][on]), ("token_type_ids", batch["token_type_ids"][i][on]),
                         ("input_mask", np.ones(n, np.int32))):
        rows[key].append(np.pad(value, (0, LENGTH - n)))
      where.append((i, j))
  e = len(where)
  alone_batch = {**{k: np.stack(v) for k, v in rows.items()}, "task_id": np.zeros(e, np.int32),
                 "label": np.zeros(e, np.int32), "score": np.zeros(e, np.float32),
                 "tags": np.full((e, LENGTH), -1, np.int32), "weight": np.ones(e, np.float32)}
  alone_E = np.asarray(model.apply(params, {k: jnp.asarray(v) for k, v in alone_batch.items()}).pooled_logits[:, 0])
  for i, item in enumerate(ITEMS):
    alone = [float(alone_E[where.index((i, j))]) for j in range(len(item["choices"]))]
    np.testing.assert_allclose(np.asarray(scores[i, :len(alone)]), alone, atol=1e-5)
    want = -(alone[item["label"]] - np.log(np.exp(alone).sum()))  # softmax over the present choices only
    np.testing.assert_allclose(loss[i], want, atol=1e-5)
  one_row = gin.parse_config("choice_encoding.encoding = 'one_row'")  # noqa: F841  the old layout stays selectable
  old = _batch("mc_pairs_one_row")
  assert (old["tags"] >= -1).all() and old["tags"].max() == 3  # choice tokens tagged 0..3, -1 elsewhere
  out_old = model.apply(params, {k: jnp.asarray(v) for k, v in old.items()})
  assert not np.allclose(np.asarray(multiple_choice.choice_scores(out_old.token_logits[..., 0], old["tags"])[0]),
                         np.asarray(scores), atol=1e-3)


def test_bad_encoding_is_one_line(clean_gin):
  gin.parse_config("choice_encoding.encoding = 'listwise'")
  with pytest.raises(ValueError, match="choice_encoding.encoding must be one of pairs, one_row, got 'listwise'"):
    multiple_choice.encoding()


def test_pairs_equal_hf_tokenizer_context_choice(clean_gin):
  transformers = pytest.importorskip("transformers")
  hf = transformers.AutoTokenizer.from_pretrained(str(store.resolve("all-MiniLM-L6-v2")))
  gin.bind_parameter("pretrained.checkpoint", "all-MiniLM-L6-v2")
  items = ITEMS + [{"text": "word " * 60, "choices": ["a short one", "long choice " * 30, "Café naïve 中文"],
                    "label": 0}]
  for length in (32,):
    batch = _batch(f"mc_pairs_hf_{length}", items, length)
    for i, item in enumerate(items):
      budget = length // len(item["choices"])
      for j, choice in enumerate(item["choices"]):
        on = batch["tags"][i] == multiple_choice.pair_tag(j)
        want = hf(item["text"], choice, truncation=True, max_length=budget, return_token_type_ids=True)
        assert batch["input_ids"][i][on].tolist() == want["input_ids"], (length, i, j)
        assert batch["token_type_ids"][i][on].tolist() == want["token_type_ids"], (length, i, j)
      assert (batch["tags"][i][batch["input_mask"][i] > 0] <= multiple_choice.PAIR_TAG).all()


@pytest.mark.matrix  # ~5 CPU-s: keeps the default part of this file near 20 CPU-s
def test_packed_rows_of_choice_pairs_give_the_unpacked_scores(clean_gin):
  """Packing (input/packing.py) several MC examples in one row: each example's pairs still on their own."""
  import tensorflow as tf
  from mtl_jax.input import packing
  from mtl_jax.models import segments
  batch = _batch("mc_pairs_packed")
  packed = list(packing.pack_examples(tf.data.Dataset.from_tensor_slices(batch), LENGTH, 2).as_numpy_iterator())
  packed = {k: np.stack([r[k] for r in packed]) for k in packed[0]}
  assert (packed["segment_weight"].sum(1) == 2).all() and len(packed["task_id"]) == 2  # 2 examples a row
  config = EncoderConfig(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, max_len=64,
                         vocab_size=offline.VOCABULARY.default.vocab_size, type_vocab_size=2)
  model = build_model(config, "hard", [1])
  params = {"params": model.init(jax.random.key(1), {k: jnp.asarray(v) for k, v in batch.items()})["params"]}
  out = model.apply(params, {k: jnp.asarray(v) for k, v in batch.items()})
  want = multiple_choice.choice_scores(out.token_logits[..., 0], jnp.asarray(batch["tags"]))
  out_E, view = segments.example_view(model.apply(params, {k: jnp.asarray(v) for k, v in packed.items()}),
                                      {k: jnp.asarray(v) for k, v in packed.items()})
  got = multiple_choice.choice_scores(out_E.token_logits[..., 0], view["tags"])
  np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
  np.testing.assert_allclose(np.where(want[1], got[0], 0), np.where(want[1], want[0], 0), atol=1e-5)


def test_probe_token_states_encode_each_pair_alone(clean_gin):
  """mtl-probe's token heads (probe/token_heads.py) read the trunk's states of a choice row as training does."""
  from mtl_jax.probe.featurize import LayerFeatures
  batch = _batch("mc_pairs_probe")
  config = EncoderConfig(d_model=32, num_heads=2, mlp_dim=64, num_layers=2, max_len=64,
                         vocab_size=offline.VOCABULARY.default.vocab_size, type_vocab_size=2)
  model = LayerFeatures(config, tokens=True)
  ids, mask, types = (jnp.asarray(batch[k]) for k in ("input_ids", "input_mask", "token_type_ids"))
  params = model.init(jax.random.key(2), ids, mask, types)
  got = np.asarray(model.apply(params, ids, mask, types, jnp.asarray(batch["tags"])))
  i, j = 2, 3  # the 4-choice example's last pair, alone in its own row
  on = batch["tags"][i] == multiple_choice.pair_tag(j)
  n = int(on.sum())
  pad = lambda v: jnp.asarray(np.pad(v, (0, LENGTH - n)))[None]
  alone = np.asarray(model.apply(params, pad(batch["input_ids"][i][on]), pad(np.ones(n, np.int32)),
                                 pad(batch["token_type_ids"][i][on])))
  np.testing.assert_allclose(got[i][on], alone[0, :n], atol=1e-5)
  assert not np.allclose(np.asarray(model.apply(params, ids, mask, types))[i][on], alone[0, :n], atol=1e-3)


def test_truncation_counts_an_example_whose_pair_is_cut(clean_gin):
  """The run's truncation line (input/truncation.py) counts a choice item cut when one pair exceeds its share."""
  from mtl_jax.input import truncation
  _batch("mc_pairs_count")
  spm, length = offline.VOCABULARY.default, 20
  pair_sizes = [[len(spm.encode(it["text"])) + len(spm.encode(c)) + 2 for c in it["choices"]] for it in ITEMS]
  want = sum(max(s) > length // len(s) for s in pair_sizes)
  assert any(sum(s) <= length < max(s) * len(s) for s in pair_sizes)  # whole row fits, a pair does not
  assert truncation.counts(["mc_pairs_count"], length)["mc_pairs_count"]["validation"] == (want, len(ITEMS))


def test_a_resume_that_switches_the_choice_layout_is_refused(clean_gin):
  """run_spec records the MC layout of a run with an MC task; a run saved before it (no entry) was one row."""
  from mtl_jax.run import run_spec
  _batch("mc_pairs_spec")
  registration.add_task("cls_spec", kind="classification", vocabulary=offline.VOCABULARY, label_names=("a", "b"),
                        examples_fn=lambda split: [{"text": "x", "label": 0}])
  assert run_spec.choice_record(["cls_spec"]) is None and run_spec.choice_record(["mc_pairs_spec"]) == "pairs"
  base = {"sharing": "hard", "tasks": ["mc_pairs_spec"], "num_classes": [1], "param_groups": {}, "encoder": {},
          "train_example_limit": {"limit": None, "subset_seed": None}, "param_shapes": {}}
  now = {**base, "choice_encoding": "pairs"}
  assert not [d for d in run_spec.differences({**base, "choice_encoding": "pairs"}, now) if "choice" in d]
  (line,) = [d for d in run_spec.differences(base, now) if "choice" in d]  # an old spec: one row
  assert line.startswith("choice_encoding.encoding 'one_row' -> 'pairs'") and "'one_row'" in line.split("resume")[1]
  no_mc = {**base, "tasks": ["cls_spec"], "choice_encoding": None}
  assert not [d for d in run_spec.differences({**base, "tasks": ["cls_spec"]}, no_mc) if "choice" in d]
