"""invocation.scope: one data hash per task per invocation; outside it, edited data is seen."""

from mtl_jax.run import data_fingerprint, invocation
from tasks import offline, registration

_ROWS = {"rows": [{"text": f"row {i}", "label": i % 2} for i in range(8)], "calls": 0}


def _examples(split):
  _ROWS["calls"] += 1
  return list(_ROWS["rows"])


registration.add_task("fingerprint_memo_task", kind="classification", vocabulary=offline.VOCABULARY,
                      label_names=("neg", "pos"), examples_fn=_examples)


def test_memoised_hashes_once_and_outside_sees_edits():
  first = data_fingerprint.task_fingerprint("fingerprint_memo_task")
  with invocation.scope():
    calls = _ROWS["calls"]
    a = data_fingerprint.task_fingerprint("fingerprint_memo_task")
    _ROWS["rows"] = _ROWS["rows"][1:]
    b = data_fingerprint.task_fingerprint("fingerprint_memo_task")  # inside: the first answer, not re-read
    assert a == b == first and _ROWS["calls"] > calls
    calls = _ROWS["calls"]
    data_fingerprint.task_fingerprint("fingerprint_memo_task")
    assert _ROWS["calls"] == calls
  assert data_fingerprint.task_fingerprint("fingerprint_memo_task") != first  # outside: the edit is seen
