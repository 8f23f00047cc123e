"""A fingerprint of each task's data, recorded in run_spec.json to refuse resuming on changed data.

Why: a resumed run replays the input stream by position (batches consumed), so if a
task's examples changed underneath (a new corpus version, an edited file task, another
generator), the resumed run silently trains on other data than its first half did.
What is cheap and robust: for in-memory tasks (every `registration.add_task` task),
the sha256 of the Python examples of the splits a run reads (train + evaluation
splits), the very values the pipeline tokenizes; examples_fn results are cached, so
this costs milliseconds. TFDS tasks: their versioned dataset name and split mapping.
Other sources: no fingerprint (not compared). Inside an `invocation.scope()` (one mtl-train invocation:
a run, or the K lanes of a seeds run, which read the same data) each task is hashed once: a run asks for
it per split it tokenizes and per lane, and hashing the synthetic tasks' examples again each time cost
~2 CPU-s a run. Outside it (a second invocation in the same process, as the tests do after editing data)
every call hashes afresh. Override a refusal with

    --gin.data_fingerprint.accept_changed_data=True
"""

from __future__ import annotations

import hashlib
import json

import gin
import seqio

from mtl_jax.input import input_pipeline
from mtl_jax.run import invocation


def task_fingerprint(name: str) -> str | None:
  return invocation.once(("data_fingerprint", name), lambda: _compute(name))


def _compute(name: str) -> str | None:
  try:
    task = seqio.get_mixture_or_task(name)
  except ValueError:  # not a registered task (spec-only callers): nothing to fingerprint
    return None
  source = task.source
  splits = ("train", *input_pipeline.eval_splits(task))
  examples_fn = getattr(source, "_examples_fn", None)  # registration.InMemorySource
  if examples_fn is not None:
    digest = hashlib.sha256()
    for split in splits:
      digest.update(f"{split}\n".encode())
      for example in examples_fn(split):
        digest.update(json.dumps(example, sort_keys=True, default=str).encode() + b"\n")
    return "examples-sha256:" + digest.hexdigest()
  tfds = getattr(source, "tfds_dataset", None)
  if tfds is not None:
    return f"tfds:{tfds.name}:" + json.dumps(getattr(source, "splits", None), sort_keys=True, default=str)
  return None


def of_tasks(names) -> dict[str, str | None]:
  return {name: task_fingerprint(name) for name in names}


@gin.configurable("data_fingerprint")
def accept_changed_data(accept_changed_data: bool = False) -> bool:
  return bool(accept_changed_data)


def differences(saved: dict | None, current: dict) -> list[str]:
  """Tasks whose recorded fingerprint differs (tasks without one, or old run_specs, pass)."""
  if not saved:
    return []
  changed = [t for t, fp in current.items() if saved.get(t) and fp and saved[t] != fp]
  if not changed:
    return []
  if accept_changed_data():
    print(f"mtl_jax: WARNING: the data of task(s) {', '.join(changed)} changed since this run started; "
          "accepted (data_fingerprint.accept_changed_data)", flush=True)
    return []
  return [f"the data of task(s) {', '.join(changed)} changed since this run started (fingerprint "
          f"{saved[changed[0]][:30]}... -> {current[changed[0]][:30]}...); restore the data, or accept it with "
          "--gin.data_fingerprint.accept_changed_data=True"]
