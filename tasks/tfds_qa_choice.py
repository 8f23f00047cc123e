"""Extractive QA and multiple choice from TFDS: SQuAD v1.1 / v2.0, HellaSwag, PIQA (plus COPA in tasks/glue.py),
and CoNLL-2003 NER (a second tagging task beside the offline wnut16_ner, for transfer across task classes).

  task             kind             TFDS                 splits     metric
  squad_v1         span_qa          squad/v1.1:3.0.0     carved     SQuAD v1.1 EM / F1
  squad_v2         span_qa          squad/v2.0:3.0.0     carved     SQuAD v2.0 EM / F1, HasAns / NoAns
  hellaswag        multiple_choice  hellaswag:1.1.0      carved     accuracy (4 endings)
  piqa             multiple_choice  piqa:1.0.0           carved     accuracy (2 solutions)
  conll2003_ner    tagging          conll2003:1.0.0      TFDS's     span F1, token accuracy (BIO, 9 tags)
  super_glue_copa_mc  (tasks/glue.py)                                        accuracy (2 choices)

Why through Python examples (registration.add_task) and not seqio's TFDS source: the QA metric
regroups a question's doc-stride windows against the split's questions (heads/span_qa.squad_metric
needs `examples_fn`), and the QA / MC checks (gold offsets matching the context, 2+ choices, a
non-empty question) then run on TFDS data as on file tasks: one line naming the example. A split is
read once per process and kept. SQuAD v2.0's unanswerable questions have no gold answer; the model
answers null (the first token) when its null score beats the best span by more than the threshold
(span_qa.squad_metric's null_threshold). SWAG is not in TFDS (4.9): a file task can carry it
(kind=multiple_choice). Splits 'carved', as GLUE's (tasks/glue_carve.py; SQuAD has no public test
split, HellaSwag's and PIQA's test labels are hidden): 'train' and 'validation' (the dev split for
selection) are the two sides of the fixed hash carve of TFDS train (mtl_jax/data/splits.py
`carved_split`, ~10 %; the key is the context, so a SQuAD paragraph's questions stay on one side),
'test' is TFDS validation, the held-out number (run/held_out.py). CoNLL-2003 keeps its own three splits.

Read-only: the data must be prepared beforehand (`tfds build squad/v2.0`); mtl_jax never downloads
at training time. Tests use `tfds.testing.mock_data` (tests/test_tasks_tfds_qa_choice.py).
Vocabulary: the offline tasks' (tasks.offline.VOCABULARY: SentencePiece or the run's checkpoint).
"""

from __future__ import annotations

import functools
from typing import Callable

from mtl_jax.data import splits as split_rule
from mtl_jax.step import metrics as M
from tasks import offline, registration

SQUAD_VERSION = "3.0.0"
HELLASWAG_VERSION = "1.1.0"
PIQA_VERSION = "1.0.0"
CONLL_VERSION = "1.0.0"
CARVED = {"train": "train", "validation": "train", "test": "validation"}  # seqio split -> TFDS split
CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")  # TFDS 'ner' order


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_split(tfds_name: str, split: str) -> list[dict]:
  """Every example of a prepared TFDS split as numpy dicts; never downloads (one line if unprepared)."""
  import tensorflow_datasets as tfds
  try:
    ds = tfds.builder(tfds_name).as_dataset(split=split, shuffle_files=False)
  except AssertionError as e:  # TFDS: "Dataset ...: could not find data in ..."
    raise RuntimeError(f"TFDS data for {tfds_name!r} is not prepared and mtl_jax does not download at "
                       f"training time; run `tfds build {tfds_name.split(':')[0]}` first ({e})") from None
  return list(ds.as_numpy_iterator())


def tfds_examples(tfds_name: str, convert: Callable[[dict], dict], splits=None,
                  carve_key: Callable[[dict], str] = lambda e: e["text"]) -> Callable[[str], list]:
  """examples_fn(split) over a TFDS dataset, each TFDS split read and converted once. `splits` None: the
  carve (CARVED: train / validation = the sides of splits.carved_split(carve_key(example)) over TFDS
  train, test = TFDS validation); else seqio split -> TFDS split. Unknown split -> []."""
  mapping = dict(CARVED if splits is None else splits)

  @functools.lru_cache(maxsize=None)
  def cached(tfds_split: str) -> tuple:
    return tuple(convert(ex) for ex in read_split(tfds_name, tfds_split))

  def examples(split: str) -> list:
    if split not in mapping:
      return []
    rows = list(cached(mapping[split]))
    if splits is None and split != "test":
      rows = [e for e in rows if split_rule.carved_split(carve_key(e)) == split]
    return rows
  examples.cache_clear = cached.cache_clear
  return examples


def squad_example(ex: dict) -> dict:
  """TFDS squad -> {'text': question, 'context', 'answers' [{'text', 'answer_start'}], 'id'} (v2.0's
  unanswerable questions have no answers; their 'plausible_answers' are not gold)."""
  answers = ex["answers"]
  return {"text": _text(ex["question"]), "context": _text(ex["context"]), "id": _text(ex["id"]),
          "answers": [{"text": _text(t), "answer_start": int(s)}
                      for t, s in zip(answers["text"], answers["answer_start"])]}


def hellaswag_example(ex: dict) -> dict:
  return {"text": _text(ex["context"]), "choices": [_text(e) for e in ex["endings"]], "label": int(ex["label"])}


def piqa_example(ex: dict) -> dict:
  return {"text": _text(ex["goal"]), "choices": [_text(ex["sol1"]), _text(ex["sol2"])], "label": int(ex["label"])}


def conll_example(ex: dict) -> dict:
  return {"tokens": [_text(t) for t in ex["tokens"]], "tags": [int(t) for t in ex["ner"]]}


EXAMPLES = {
    "squad_v1": tfds_examples(f"squad/v1.1:{SQUAD_VERSION}", squad_example, carve_key=lambda e: e["context"]),
    "squad_v2": tfds_examples(f"squad/v2.0:{SQUAD_VERSION}", squad_example, carve_key=lambda e: e["context"]),
    "hellaswag": tfds_examples(f"hellaswag:{HELLASWAG_VERSION}", hellaswag_example),
    "piqa": tfds_examples(f"piqa:{PIQA_VERSION}", piqa_example),
    "conll2003_ner": tfds_examples(f"conll2003:{CONLL_VERSION}", conll_example, {s: s for s in registration.SPLITS}),
}

for _name in ("squad_v1", "squad_v2"):
  registration.add_task(_name, kind="span_qa", vocabulary=offline.VOCABULARY, label_names=("start", "end"),
                        examples_fn=EXAMPLES[_name])
registration.add_task("hellaswag", kind="multiple_choice", vocabulary=offline.VOCABULARY,
                      label_names=("ending1", "ending2", "ending3", "ending4"), examples_fn=EXAMPLES["hellaswag"],
                      metric_fns=(M.accuracy,))
registration.add_task("piqa", kind="multiple_choice", vocabulary=offline.VOCABULARY, label_names=("sol1", "sol2"),
                      examples_fn=EXAMPLES["piqa"], metric_fns=(M.accuracy,))
registration.add_task("conll2003_ner", kind="tagging", vocabulary=offline.VOCABULARY, label_names=CONLL_TAGS,
                      examples_fn=EXAMPLES["conll2003_ner"])
