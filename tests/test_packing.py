"""Packing (mtl_jax/input/packing.py + mtl_jax/models/segments.py): several examples of one task per row.

The core check (issue #29): the per-example logits and losses of a packed batch equal those of the
same examples unpacked (atol 1e-5), for every sharing strategy, from scratch and from a tiny
pretrained BERT / RoBERTa checkpoint. The packer is checked against an independent numpy greedy
packer, the fill rate against a numpy count, and the packed train stream for determinism and resume.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest
import tensorflow as tf
from flax import traverse_util

from mtl_jax.input import packing
from mtl_jax.models import segments
from mtl_jax.models.multitask import build_model
from mtl_jax.pretrained import checkpoint as ckpt_lib
from mtl_jax.pretrained import load
from mtl_jax.step import losses

from helpers import TINY
from pretrained_fixtures import write_tiny_checkpoint

L, S = 16, 3
KINDS = ("classification", "regression", "tagging", "multiple_choice")
NUM_CLASSES = (3, 1, 4, 1)
STRATEGIES = ("hard", "soft", "sluice", "cross_stitch", "mmoe", "adapters", "lora", "adapter_fusion")
CHEAP = ("hard",)


def examples(n=16, seed=0, ids=(1, 50), max_len=9):
  """Converted (features.py) examples sorted by task: random lengths, a pair's second half type 1, tags
  on the tagging task's tokens, choice indices 0-2 on the multiple-choice task's (after its first)."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    task = i * len(KINDS) // n
    k = int(rng.integers(2, max_len + 1))
    real = np.arange(L) < k
    out.append({
        "input_ids": np.where(real, rng.integers(*ids, L), 0).astype(np.int32),
        "input_mask": real.astype(np.int32),
        "task_id": np.int32(task),
        "label": np.int32((1 + rng.integers(0, min(3, k - 1))) % 3 if KINDS[task] == "multiple_choice"
                          else rng.integers(0, NUM_CLASSES[task])),  # a choice the example has
        "score": np.float32(rng.normal()),
        "tags": np.where(real & (KINDS[task] == "tagging"), rng.integers(0, 4, L),
                         np.where(real & (KINDS[task] == "multiple_choice") & (np.arange(L) > 0),
                                  np.arange(L) % 3, -1)).astype(np.int32),
        "weight": np.float32(1.0),
        "token_type_ids": (real & (np.arange(L) >= k // 2)).astype(np.int32),
    })
  return out


def stack(rows):
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


K = 4  # open rows in these tests


def pack(exs, length=L, max_segments=S, open_rows=K):
  ds = tf.data.Dataset.from_tensor_slices(stack(exs))
  return stack(list(packing.pack_examples(ds, length, max_segments, open_rows).as_numpy_iterator()))


def numpy_pack(exs, length=L, max_segments=S, open_rows=K):
  """The rule written out independently: first fit over the open rows, else the oldest row out and a
  new one in; rows (lists of example indices) in the order they are emitted."""
  rows, open_ = [], []  # open rows: [members, tokens used, task]
  for i, ex in enumerate(exs):
    n, task = int(ex["input_mask"].sum()), int(ex["task_id"])
    for row in open_:
      if row[1] + n <= length and len(row[0]) < max_segments and row[2] == task:
        row[0].append(i)
        row[1] += n
        break
    else:
      if len(open_) == open_rows:
        rows.append(open_.pop(0)[0])
      open_.append([[i], n, task])
  return rows + [row[0] for row in open_]


@pytest.mark.parametrize("open_rows", [1, K])
def test_packer_matches_a_numpy_packer_and_keeps_every_token(open_rows):
  exs = examples(n=20, seed=3)
  packed = pack(exs, open_rows=open_rows)
  want = numpy_pack(exs, open_rows=open_rows)
  assert len(packed["task_id"]) == len(want)
  for r, members in enumerate(want):
    ids, seg, pos, types, tags = [], [], [], [], []
    for s, i in enumerate(members):
      n = int(exs[i]["input_mask"].sum())
      ids += exs[i]["input_ids"][:n].tolist()
      types += exs[i]["token_type_ids"][:n].tolist()
      tags += exs[i]["tags"][:n].tolist()
      seg += [s + 1] * n
      pos += list(range(n))
    pad = L - len(ids)
    np.testing.assert_array_equal(packed["input_ids"][r], ids + [0] * pad)
    np.testing.assert_array_equal(packed["token_type_ids"][r], types + [0] * pad)
    np.testing.assert_array_equal(packed["tags"][r], tags + [-1] * pad)
    np.testing.assert_array_equal(packed["segment_ids"][r], seg + [0] * pad)
    np.testing.assert_array_equal(packed["positions"][r], pos + [0] * pad)
    np.testing.assert_array_equal(packed["input_mask"][r], [1] * len(ids) + [0] * pad)
    k = len(members)
    np.testing.assert_array_equal(packed["label"][r], [exs[i]["label"] for i in members] + [0] * (S - k))
    np.testing.assert_array_equal(packed["score"][r], [exs[i]["score"] for i in members] + [0] * (S - k))
    np.testing.assert_array_equal(packed["segment_weight"][r], [1.0] * k + [0.0] * (S - k))
    assert packed["weight"][r] == k and packed["task_id"][r] == exs[members[0]]["task_id"]
  assert max(len(m) for m in want) == S and sorted(sum(want, [])) == list(range(len(exs)))
  assert (open_rows == 1) == (sum(want, []) == list(range(len(exs))))  # K > 1: later examples fill earlier rows


def test_fill_rate_is_real_tokens_over_slots():
  exs = examples(n=20, seed=4)
  packed, padded = pack(exs), stack(exs)
  lengths = np.array([e["input_mask"].sum() for e in exs])
  rows = len(numpy_pack(exs))
  assert packing.fill_rate(padded) == (lengths.sum(), len(exs) * L)
  assert packing.fill_rate(packed) == (lengths.sum(), rows * L)
  log = packing.FillRateLog(iter([packed, packed]), log_every=1000)
  list(log)
  assert log.rate == pytest.approx(lengths.sum() / (rows * L)) and log.examples == 2 * len(exs)


# ----------------------------------------------------------------------- model: packed == unpacked


def _perturbed(params, keep=lambda path: False, scale=0.05, seed=1):
  """Every param not kept moved off its init (zero-init adapters / LoRA, identity gates would hide a leak)."""
  flat = traverse_util.flatten_dict(params, sep="/")
  rng = np.random.default_rng(seed)
  return traverse_util.unflatten_dict(
      {p: jax.numpy.asarray(v if keep(p) else v + scale * rng.standard_normal(v.shape).astype(np.float32))
       for p, v in ((p, np.asarray(v)) for p, v in flat.items())}, sep="/")


def _model_and_params(strategy, config, ckpt=None):
  model = build_model(config, strategy, NUM_CLASSES)
  unpacked = stack(examples())
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), unpacked)["params"])
  if ckpt is None:
    return model, _perturbed(params)
  params = load.into_params(params, ckpt.params())
  return model, _perturbed(jax.device_get(params), keep=lambda p: load.checkpoint_key(p) is not None)


def assert_packed_equals_unpacked(model, params, exs):
  unpacked, packed = stack(exs), pack(exs)
  apply = jax.jit(lambda b: model.apply({"params": params}, b, deterministic=True))
  out_u, out_p = apply(unpacked), apply(packed)
  out_e, view = segments.example_view(out_p, packed)
  slot = np.empty(len(exs), int)  # example i sits in view row slot[i] (the packer == numpy_pack: tested above)
  for r, members in enumerate(numpy_pack(exs)):
    slot[members] = r * S + np.arange(len(members))
  assert (np.asarray(view["weight"]) > 0).sum() == len(exs)
  np.testing.assert_allclose(np.asarray(out_e.pooled_logits)[slot], out_u.pooled_logits, atol=1e-5, rtol=0)
  loss_e = np.asarray(losses.example_losses(out_e, view, KINDS))[slot]
  loss_u = np.asarray(losses.example_losses(out_u, unpacked, KINDS))
  np.testing.assert_allclose(loss_e, loss_u, atol=1e-5, rtol=0)
  token_u, token_p = np.asarray(out_u.token_logits), np.asarray(out_p.token_logits)
  for i, e in enumerate(exs):  # every example's tokens (tagging and multiple choice read them): the same logits
    row, s = divmod(int(slot[i]), S)
    where = packed["segment_ids"][row] == s + 1
    np.testing.assert_allclose(token_p[row][where], token_u[i][: int(e["input_mask"].sum())], atol=1e-5, rtol=0)
  rows_loss = losses.example_losses(out_p, packed, KINDS)  # per row, weighted by the row's example count
  got_t, count_p = losses.per_task_mean(rows_loss, packed["weight"], packed["task_id"], len(KINDS))
  want_t, count_u = losses.per_task_mean(loss_u, unpacked["weight"], unpacked["task_id"], len(KINDS))
  np.testing.assert_allclose(got_t, want_t, atol=1e-5, rtol=0)
  np.testing.assert_array_equal(count_p, count_u)
  assert len(packed["task_id"]) < len(exs)  # really packed


SCRATCH = dataclasses.replace(TINY, type_vocab_size=2, max_len=32)


@pytest.mark.parametrize("strategy", [s if s in CHEAP else pytest.param(s, marks=pytest.mark.matrix)
                                      for s in STRATEGIES])
def test_packed_logits_and_losses_equal_unpacked_from_scratch(strategy):
  model, params = _model_and_params(strategy, SCRATCH)
  assert_packed_equals_unpacked(model, params, examples())


@pytest.mark.matrix  # the default suite's pretrained BERT case pools 'cls' too
def test_cls_pooling_reads_each_examples_first_token():
  model, params = _model_and_params("hard", dataclasses.replace(SCRATCH, pooling="cls"))
  assert_packed_equals_unpacked(model, params, examples(seed=2))


@pytest.fixture(scope="module")
def tiny_ckpts(tmp_path_factory):
  root = tmp_path_factory.mktemp("packing_ckpt")
  return {"bert": ckpt_lib.open_checkpoint(write_tiny_checkpoint(root / "bert")),
          "roberta": ckpt_lib.open_checkpoint(write_tiny_checkpoint(root / "roberta", model_type="roberta",
                                                                    pooling="mean"))}


@pytest.mark.parametrize("layout", ["bert", pytest.param("roberta", marks=pytest.mark.matrix)])
@pytest.mark.parametrize("strategy", [s if s in CHEAP else pytest.param(s, marks=pytest.mark.matrix)
                                      for s in STRATEGIES])
def test_packed_logits_and_losses_equal_unpacked_from_a_pretrained_trunk(tiny_ckpts, layout, strategy):
  """Post-LN BERT with token types and its own position table (RoBERTa: offset 2); real vocabulary ids."""
  ckpt = tiny_ckpts[layout]
  model, params = _model_and_params(strategy, ckpt.encoder_config(), ckpt)
  assert_packed_equals_unpacked(model, params, examples(ids=(1000, 2000)))


def test_packing_is_refused_in_one_line_for_span_qa(clean_gin):
  import gin
  packing.check(TINY, ["span_qa"])  # packing off: no refusal
  gin.bind_parameter("packing.enabled", True)
  packing.check(dataclasses.replace(TINY, model_type="t5", norm="post", relative_buckets=8,
                                    relative_max_distance=16), ["classification"])  # every layout: test_packing_layouts
  with pytest.raises(ValueError, match=r"does not support head kind span_qa .*: squad \(span_qa\)"):
    packing.check(TINY, ["classification", "span_qa"], ["cola", "squad"])
  packing.check(TINY, ["classification", "tagging", "multiple_choice"])  # served
  gin.bind_parameter("packing.max_segments", 0)
  with pytest.raises(ValueError, match="packing.max_segments must be an int >= 1, got 0"):
    packing.settings()


# ----------------------------------------------------------------------- the train stream


@pytest.fixture(scope="module")
def toy_stream():
  from mtl_jax.data.word_vocab import WordVocabulary
  from mtl_jax.input import input_pipeline as ip
  from tasks import registration
  vocab = WordVocabulary(200)
  for t, n in enumerate((24, 40)):  # texts of 1-6 words: several fit a row of 12
    registration.add_task(
        f"toypack_{t}", kind="classification", vocabulary=vocab, label_names=("a", "b"),
        examples_fn=lambda split, t=t, n=n: [{"text": " ".join(f"w{t}{i}" for _ in range(1 + i % 6)),
                                               "label": i % 2} for i in range(n)])
  registration.add_mixture("toypack", [("toypack_0", 1.0), ("toypack_1", 2.0)])
  return ip.get_provider("toypack")


def _take(it, n):
  return [next(it) for _ in range(n)]


@pytest.mark.parametrize("layout", ["mixed", pytest.param("grouped", marks=pytest.mark.matrix)])
def test_packed_stream_is_deterministic_and_resumes_exactly(toy_stream, layout, clean_gin):
  import gin
  from mtl_jax.input import input_pipeline as ip
  gin.bind_parameter("packing.enabled", True)
  gin.bind_parameter("packing.max_segments", 4)
  full = _take(ip.train_batches(toy_stream, {"inputs": 12}, 8, seed=5, layout=layout), 12)
  again = _take(ip.train_batches(toy_stream, {"inputs": 12}, 8, seed=5, layout=layout), 12)
  resumed = _take(ip.train_batches(toy_stream, {"inputs": 12}, 8, seed=5, start_batch=7, layout=layout), 5)
  for a, b in zip(full, again[:7] + resumed):
    assert sorted(a) == sorted(b)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert {"segment_ids", "positions", "segment_weight"} <= set(full[0])
  assert max(float(b["weight"].max()) for b in full) > 1  # rows really hold several examples


def test_packed_stream_regroups_the_unpacked_stream(toy_stream, clean_gin):
  """With one open row, a task's packed rows hold exactly its unpacked stream's examples, in order (more
  open rows reorder them: test_packer_matches_a_numpy_packer_and_keeps_every_token)."""
  import gin
  from mtl_jax.input import input_pipeline as ip
  task = ip.get_provider("toypack_1")
  flat = [e for b in _take(ip.train_batches(task, {"inputs": 12}, 8, seed=2), 10) for e in zip(
      b["input_ids"], b["input_mask"], b["label"])]
  gin.bind_parameter("packing.enabled", True)
  gin.bind_parameter("packing.open_rows", 1)
  packed = _take(ip.train_batches(task, {"inputs": 12}, 4, seed=2), 6)
  got = []
  for b in packed:
    for r in range(len(b["weight"])):
      for s in range(int(b["weight"][r])):
        where = b["segment_ids"][r] == s + 1
        got.append((b["input_ids"][r][where], int(b["label"][r][s])))
  assert len(got) > 24
  for (ids, mask, label), (pids, plabel) in zip(flat, got):
    np.testing.assert_array_equal(ids[mask > 0], pids)
    assert label == plabel


@pytest.mark.matrix
def test_pcgrad_trains_on_packed_grouped_batches_with_per_example_task_losses():
  """A gradient method sees per-task losses that are per-EXAMPLE means (the row weight is its example
  count), and its steps lower them."""
  import optax
  from mtl_jax import weighting as weighting_lib
  from mtl_jax.scale import partitioning
  from mtl_jax.step.steps import Steps
  exs = examples(n=30, seed=5)
  packed = pack(exs)
  take = np.concatenate([np.flatnonzero(packed["task_id"] == t)[:2] for t in range(len(KINDS))])
  batch = {k: v[take] for k, v in packed.items()}  # task-major, 2 rows per task: the grouped layout
  rows = numpy_pack(exs)
  members = [i for r in take for i in rows[r]]
  unpacked = stack([exs[i] for i in members])
  model = build_model(SCRATCH, "hard", NUM_CLASSES)
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = Steps(model, optax.adam(3e-3), KINDS, mesh, partitioning.logical_axis_rules(), 0, len(take), L,
                grouped=True, weighting=weighting_lib.base.build("pcgrad", len(KINDS)))
  state = steps.init_state()
  out = model.apply({"params": state.params}, unpacked)
  want, _ = losses.per_task_mean(losses.example_losses(out, unpacked, KINDS), unpacked["weight"],
                                 unpacked["task_id"], len(KINDS))
  first = None
  for _ in range(6):
    state, metrics = steps.run_train_step(state, batch)
    first = metrics["task_loss"] if first is None else first
  np.testing.assert_allclose(first, want, atol=1e-5, rtol=0)
  np.testing.assert_array_equal(metrics["task_count"], np.bincount(unpacked["task_id"], minlength=len(KINDS)))
  assert bool(metrics["finite"]) and (np.asarray(metrics["task_loss"]) < np.asarray(first)).all()


def test_a_resume_that_switches_packing_is_refused(clean_gin):
  """Packed rows are another train stream: run_spec records the packing that fixes it and names a change."""
  import gin
  from mtl_jax.run import run_spec
  gin.parse_config(["from mtl_jax.input import packing"])
  off = run_spec.packing_record()
  gin.parse_config_files_and_bindings(["gin/mixing/packed.gin"], ["packing.log_every = 7"])
  on = run_spec.packing_record()
  assert off == {"enabled": False} and on["enabled"] and "log_every" not in on
  rest = {"encoder": {}, "param_groups": {}, "param_shapes": {}, "train_example_limit": {"limit": None,
          "subset_seed": None}}
  said = [d for d in run_spec.differences({**rest, "packing": off}, {**rest, "packing": on}) if "packing" in d]
  assert len(said) == 1 and said[0].startswith("packing {'enabled': False} -> {'enabled': True")
  assert not [d for d in run_spec.differences(rest, {**rest, "packing": off}) if "packing" in d]  # old specs
  other = {**on, "max_segments": on["max_segments"] + 1}
  assert [d for d in run_spec.differences({**rest, "packing": on}, {**rest, "packing": other}) if "packing" in d]
