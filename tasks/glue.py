"""GLUE and SuperGLUE classification/regression tasks from TFDS, in the common schema.

Why here: they are the standard multi-task benchmark; registered through
`registration.add_tfds_task`, they mix with the offline and synthetic tasks.
Importing registers the tasks only (no data is touched); the data must be
prepared by TFDS beforehand (`tfds build glue/<config>`; the sources are
read-only and never download at training time), or mocked in tests with
`tfds.testing.mock_data(num_examples=...)` (default policy AUTO; no dataset
metadata ships for glue/super_glue, so TFDS falls back to the builder code, and
split sizes are unknown: mixing then counts examples).

Input text: sentence-pair tasks are encoded natively (mtl_jax/input/pairs.py: the
checkpoint's `[CLS] a [SEP] b [SEP]` / `<s> a </s></s> b </s>` with token types, from
scratch `a </s> b </s>` with segments 0 / 1; HF's longest-first truncation);
`PAIR_FORMAT = 'join'` (set before import, or pass pair_format) gives the T5 form
'<field1>: <text1> <field2>: <text2>'. Tasks of three or more fields (copa, multirc,
wic, wsc) use the T5 form; either form cuts the longest text first and keeps tokens of
every text. Single-sentence tasks use the sentence as is. Vocabulary: the offline 8k SentencePiece (`tasks.offline`), so
these tasks share one vocabulary with every offline task and can be mixed.

  task                kind  fields (in order)                           metrics
  glue_cola           cls2  sentence                                    mcc, accuracy
  glue_sst2           cls2  sentence                                    accuracy
  glue_mrpc           cls2  sentence1, sentence2                        accuracy, f1
  glue_qqp            cls2  question1, question2                        accuracy, f1
  glue_stsb           reg   sentence1, sentence2 (score / 5 -> [0, 1])  pearson, spearman
  glue_mnli           cls3  premise, hypothesis                         accuracy
  glue_qnli           cls2  question, sentence                          accuracy
  glue_rte            cls2  sentence1, sentence2                        accuracy
  glue_wnli           cls2  sentence1, sentence2                        accuracy
  super_glue_boolq    cls2  question, passage                           accuracy
  super_glue_cb       cls3  premise, hypothesis                         accuracy, f1_macro
  super_glue_copa     cls2  premise, question, choice1, choice2         accuracy
  super_glue_multirc  cls2  question, answer, paragraph                 f1 (F1a), accuracy
  super_glue_rte      cls2  premise, hypothesis                         accuracy
  super_glue_wic      cls2  word, sentence1, sentence2                  accuracy
  super_glue_wsc      cls2  span1_text, span2_text, text (wsc.fixed)    accuracy

Splits (tasks/glue_carve.py): the test labels are hidden, so 'train' and 'validation' (the dev
split, for checkpoint selection and tuning) are the two sides of a fixed hash carve of TFDS train
(~10 % dev, mtl_jax/data/splits.py `carved_split`), and 'test' is TFDS validation: the held-out
number (run/held_out.py). MNLI: 'test' is TFDS validation_matched; 'validation_mismatched' (TFDS
validation_mismatched) stays an extra evaluation split
(`input_pipeline.eval_splits(task) == ('validation', 'validation_mismatched')`).
COPA is a 2-way choice cast as classification: label 0 = choice1, 1 = choice2,
'question' is 'cause'/'effect'; `super_glue_copa_mc` is COPA as multiple choice
(heads/multiple_choice.py: context 'premise: .. question: cause', choices choice1 /
choice2, one score each, softmax; not in the mixtures). MultiRC scores each (question, answer) pair as
true/false; the official per-question exact match needs grouping by question
and is not computed. ReCoRD (entity span selection) and the test-only
diagnostics AX-b/AX-g are not classification-with-training-data: left out.
TFDS test splits are not registered: their labels are hidden (-1).
Mixtures: 'glue' (9 tasks), 'super_glue' (7), 'glue_super_glue' (16); rates
proportional to train size capped at 2**19 (T5's examples-proportional recipe).
"""

from __future__ import annotations

from mtl_jax.step import metrics as M
from mtl_jax.input import mixing
from tasks import glue_carve, registration
from tasks.offline import VOCABULARY

GLUE_VERSION = "2.0.0"
SUPER_GLUE_VERSION = "1.0.2"
PAIR_FORMAT = "native"
MIXING_CAP = 2 ** 19

_BIN = ("False", "True")

# GLUE config -> text fields, in input order (short first: truncation cuts the end)
GLUE = {
    "cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
}
GLUE_LABELS = {
    "cola": ("unacceptable", "acceptable"), "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"), "qqp": ("not_duplicate", "duplicate"),
    "stsb": (), "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"), "rte": ("entailment", "not_entailment"),
    "wnli": ("not_entailment", "entailment"),
}
GLUE_METRICS = {
    "cola": (M.mcc, M.accuracy), "mrpc": (M.accuracy, M.f1_binary),
    "qqp": (M.accuracy, M.f1_binary), "stsb": (M.pearson_spearman, M.mse),
}
SUPER_GLUE = {  # name: (tfds config, text fields, labels, metrics)
    "boolq": ("boolq", ("question", "passage"), _BIN, (M.accuracy,)),
    "cb": ("cb", ("premise", "hypothesis"), ("entailment", "contradiction", "neutral"),
           (M.accuracy, M.f1_macro)),
    "copa": ("copa", ("premise", "question", "choice1", "choice2"), ("choice1", "choice2"),
             (M.accuracy,)),
    "multirc": ("multirc", ("question", "answer", "paragraph"), _BIN, (M.f1_binary, M.accuracy)),
    "rte": ("rte", ("premise", "hypothesis"), ("entailment", "not_entailment"), (M.accuracy,)),
    "wic": ("wic", ("word", "sentence1", "sentence2"), _BIN, (M.accuracy,)),
    "wsc": ("wsc.fixed", ("span1_text", "span2_text", "text"), _BIN, (M.accuracy,)),
}


def glue_task_names() -> list[str]:
  return [f"glue_{n}" for n in sorted(GLUE)]


def super_glue_task_names() -> list[str]:
  return [f"super_glue_{n}" for n in sorted(SUPER_GLUE)]


def _register_glue(name: str) -> None:
  splits = glue_carve.carved_splits()
  if name == "mnli":
    splits = glue_carve.carved_splits("validation_matched", {"validation_mismatched": "validation_mismatched"})
  regression = name == "stsb"
  registration.add_tfds_task(
      f"glue_{name}", tfds_name=f"glue/{name}:{GLUE_VERSION}", text_fields=GLUE[name],
      kind="regression" if regression else "classification", label_names=GLUE_LABELS[name],
      splits=splits, metric_fns=GLUE_METRICS.get(name, (M.accuracy,)),
      vocabulary=VOCABULARY, score_scale=0.2 if regression else 1.0, pair_format=PAIR_FORMAT)
  glue_carve.carve(f"glue_{name}", GLUE[name], splits)


for _name in sorted(GLUE):
  _register_glue(_name)

for _name, (_config, _fields, _labels, _metrics) in sorted(SUPER_GLUE.items()):
  registration.add_tfds_task(
      f"super_glue_{_name}", tfds_name=f"super_glue/{_config}:{SUPER_GLUE_VERSION}",
      text_fields=_fields, kind="classification", label_names=_labels, splits=glue_carve.carved_splits(),
      metric_fns=_metrics, vocabulary=VOCABULARY, pair_format=PAIR_FORMAT)
  glue_carve.carve(f"super_glue_{_name}", _fields)

registration.add_tfds_task(
    "super_glue_copa_mc", tfds_name=f"super_glue/copa:{SUPER_GLUE_VERSION}", text_fields=("premise", "question"),
    choice_fields=("choice1", "choice2"), kind="multiple_choice", label_names=("choice1", "choice2"),
    splits=glue_carve.carved_splits(), metric_fns=(M.accuracy,), vocabulary=VOCABULARY)
glue_carve.carve("super_glue_copa_mc", SUPER_GLUE["copa"][1])  # the same carve as super_glue_copa

_RATE = mixing.proportional(maximum=MIXING_CAP)
registration.add_mixture("glue", [(t, _RATE) for t in glue_task_names()])
registration.add_mixture("super_glue", [(t, _RATE) for t in super_glue_task_names()])
registration.add_mixture("glue_super_glue",
                         [(t, _RATE) for t in glue_task_names() + super_glue_task_names()])
