"""Multi-label (partially labelled) tasks: one input, a label for each task it has.

`add_multilabel_task(name, members=..., examples_fn=...)` takes examples
  {'text': str, 'labels': {member: class int | float score}}   (a missing member = unlabelled)
and registers (see mtl_jax/input/multilabel.py for why rows):
  * each member as an ordinary task over the inputs labelled for it (evaluation, metrics,
    heads, or training it alone), via tasks.registration.add_task;
  * `name`, one seqio Task / mixture entry: each input (shuffled as a whole every epoch)
    becomes one row per member it has a label for, those rows adjacent in the stream;
  * the group in mtl_jax.input.multilabel (the run's tasks are the members; its rate in a
    mixture is the share of ROWS it gives, split among members by their label counts).
Sentence-level members (classification / regression) only; tagging members are refused.

Offline demonstration, 'vader_multilabel': the VADER tweets labelled for valence regression
(`vader_ml_valence`, score = mean valence / 4) and its thresholded binary sentiment
(`vader_ml_polarity`, positive iff valence > 0), partially: polarity is left unlabelled for
near-neutral tweets (|valence| < 0.5 on VADER's -4..4 scale) and valence is hidden for a fixed
quarter of the tweets (by a hash of the text), so the group has both-, valence-only and
polarity-only inputs. Mixture 'vader_multilabel_mix': the group alone.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Callable, Mapping, Sequence

import seqio
import tensorflow as tf

from mtl_jax.input import multilabel, task_info
from tasks import registration, validation

SENTENCE_KINDS = ("classification", "regression")


def _member_examples(examples_fn, member, kind, split):
  out = []
  for ex in examples_fn(split):
    value = (ex.get("labels") or {}).get(member)
    if value is not None:
      out.append({"text": ex["text"], ("score" if kind == "regression" else "label"): value})
  return out


def _label_counts(examples_fn, members, split) -> dict[str, int]:
  examples = examples_fn(split)
  return {m: sum((ex.get("labels") or {}).get(m) is not None for ex in examples) for m in members}


def _columns(examples, members, kinds):
  label, score, has = [], [], []
  for ex in examples:
    labels = ex.get("labels") or {}
    vals = [labels.get(m) for m in members]
    has.append([v is not None for v in vals])
    label.append([int(v) if v is not None and k == "classification" else 0 for v, k in zip(vals, kinds)])
    score.append([float(v) if v is not None and k == "regression" else 0.0 for v, k in zip(vals, kinds)])
  return {"text": [ex["text"] for ex in examples], "label": label, "score": score, "has": has}


def _rows(ex, members):
  """One input -> its labelled (input, member) rows, members in sorted order."""
  k = len(members)
  rows = {"inputs": tf.tile(ex["inputs"][None], [k, 1]), "label": ex["label"], "score": ex["score"],
          "tags": tf.zeros([k, 0], tf.int32), "token_type": tf.zeros([k, 0], tf.int32),
          "task": tf.constant(list(members)), "has": ex["has"]}
  return tf.data.Dataset.from_tensor_slices(rows).filter(lambda r: r["has"]).map(
      lambda r: {key: v for key, v in r.items() if key != "has"})


def _group_dataset_fn(split, shuffle_files, seed=None, *, examples_fn, members, kinds, vocabulary):
  examples = examples_fn(split)
  unlabelled = [i for i, ex in enumerate(examples) if not any(
      (ex.get("labels") or {}).get(m) is not None for m in members)]
  if unlabelled:
    raise ValueError(f"multi-label {split} example {unlabelled[0]} has no label for any of {list(members)}; "
                     "drop it or label it")
  ds = tf.data.Dataset.from_tensor_slices(_columns(examples, members, kinds))
  ds = ds.map(functools.partial(registration._tokenize_text, vocabulary=vocabulary)).cache()
  if shuffle_files and examples:  # inputs are permuted whole, so an input's rows stay adjacent
    ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
  return ds.flat_map(functools.partial(_rows, members=members))


def add_multilabel_task(name: str, *, members: Mapping[str, tuple[str, Sequence[str]]],
                        examples_fn: Callable[[str], Sequence[Mapping]],
                        vocabulary: seqio.Vocabulary) -> seqio.Task:
  """members: {task name: (kind, label_names)}. Returns the group's seqio Task."""
  names = tuple(sorted(members))
  bad = {m: k for m, (k, _) in members.items() if k not in SENTENCE_KINDS}
  if bad:
    raise ValueError(f"multi-label task {name!r}: members {bad} are not sentence-level; a group takes "
                     f"{SENTENCE_KINDS} members (register tagging tasks separately)")
  kinds = tuple(members[m][0] for m in names)
  for m in names:
    kind, label_names = members[m]
    registration.add_task(m, kind=kind, vocabulary=vocabulary, label_names=label_names,
                          examples_fn=functools.partial(_member_examples, examples_fn, m, kind))
  counts = functools.partial(_label_counts, examples_fn, names)
  source = registration.InMemorySource(
      dataset_fn=functools.partial(_group_dataset_fn, examples_fn=examples_fn, members=names, kinds=kinds,
                                   vocabulary=vocabulary),
      splits=registration.SPLITS,
      num_input_examples={s: sum(counts(s).values()) for s in ("train",)},  # rows, for proportional rates
  )
  multilabel.register(multilabel.Group(name, names, counts))
  return registration._register(name, source, [seqio.preprocessors.append_eos_after_trim], vocabulary,
                                [], "classification", shuffle_buffer_size=None)


# ---------------------------------------------------------------- offline demonstration

def _held_out(text: str) -> bool:
  return hashlib.sha256(("vader_ml:" + text).encode()).digest()[0] < 64  # a fixed quarter


@functools.lru_cache(maxsize=None)
def _vader_multilabel(split: str) -> tuple:
  from tasks import offline
  out = []
  for ex in offline.examples("vader_tweets", split):
    valence = ex["score"]  # mean valence / 4
    labels = {}
    if not _held_out(ex["text"]):
      labels["vader_ml_valence"] = valence
    if abs(valence) >= 0.125:
      labels["vader_ml_polarity"] = int(valence > 0)
    if labels:
      out.append({"text": ex["text"], "labels": labels})
  return tuple(out)


def _register_offline():
  from tasks import offline
  add_multilabel_task(
      "vader_multilabel", vocabulary=offline.VOCABULARY, examples_fn=lambda split: list(_vader_multilabel(split)),
      members={"vader_ml_valence": ("regression", ()), "vader_ml_polarity": ("classification", ("negative", "positive"))})
  registration.add_mixture("vader_multilabel_mix", [("vader_multilabel", 1.0)])


_register_offline()
