"""invocation.once: one computation per key inside a scope (lanes of a seeds run share it), every call outside."""

import threading
import time

import numpy as np
import pytest

from mtl_jax.input import truncation
from mtl_jax.run import invocation
from mtl_jax.step import evaluation
from tasks import offline, registration

def _examples(split):
  return [{"text": f"a short row number {i}", "label": i % 2} for i in range(10)]


registration.add_task("invocation_memo_task", kind="classification", vocabulary=offline.VOCABULARY,
                      label_names=("neg", "pos"), examples_fn=_examples)


def test_once_per_key_inside_a_scope_every_call_outside():
  calls = []
  fn = lambda: calls.append(1) or len(calls)
  assert invocation.once("k", fn) == 1 and invocation.once("k", fn) == 2  # no scope: computed each time
  with invocation.scope():
    assert invocation.once("k", fn) == 3 and invocation.once("k", fn) == 3
    assert invocation.once("other", fn) == 4
    with invocation.scope():  # nested: the same invocation
      assert invocation.once("k", fn) == 3
  with invocation.scope():  # a new invocation computes again
    assert invocation.once("k", fn) == 5


def test_concurrent_callers_wait_for_one_computation_and_failures_are_not_stored():
  started, release, calls = threading.Event(), threading.Event(), []

  def slow():
    calls.append(1)
    started.set()
    release.wait(5)
    return "value"

  with invocation.scope():
    got = []
    threads = [threading.Thread(target=lambda: got.append(invocation.once("slow", slow))) for _ in range(4)]
    for t in threads:
      t.start()
    started.wait(5)
    time.sleep(0.05)
    release.set()
    for t in threads:
      t.join(5)
    assert got == ["value"] * 4 and len(calls) == 1

    def fail():
      raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
      invocation.once("flaky", fail)
    assert invocation.once("flaky", lambda: "second try") == "second try"


def test_evaluators_of_one_invocation_share_read_only_batches():
  names, lengths = ["invocation_memo_task"], {"inputs": 16}
  a, b = evaluation.Evaluator(names, lengths, 4), evaluation.Evaluator(names, lengths, 4)
  key = ("invocation_memo_task", "validation")
  assert a.batches[key] is not b.batches[key]  # outside a scope: each builds its own
  with invocation.scope():
    c, d = evaluation.Evaluator(names, lengths, 4), evaluation.Evaluator(names, lengths, 4)
    e = evaluation.Evaluator(names, lengths, 8)  # another batch size: its own batches
  assert c.batches[key] is d.batches[key] and e.batches[key] is not c.batches[key]
  for got, want in zip(c.batches[key], a.batches[key]):
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in got)
  with pytest.raises(ValueError, match="read-only"):
    c.batches[key][0]["input_ids"][0, 0] = 1
  assert len(e.batches[key]) == 2 and len(c.batches[key]) == 3  # 10 validation examples in 8s and 4s


def test_truncation_counts_once_per_invocation():
  with invocation.scope():
    first = truncation.counts(["invocation_memo_task"], 4)
    assert truncation.counts(["invocation_memo_task"], 4) is first
  assert first["invocation_memo_task"]["validation"][1] == 10
  again = truncation.counts(["invocation_memo_task"], 4)
  assert again == first and again is not first  # outside: recounted, the same answer
