"""Offline sentence-pair tasks (mtl_jax/data/offline_pairs.py): pairs as the encoder was pretrained on them.

  task             kind                         train   val   test  metric (headline first)
  chatterbot_pair  2-way (answers / does not)   ~1,200  ~130  ~170  f1_macro, accuracy
  vader_pair       regression, [-1, 1]          ~4,270  ~515  ~510  pearson, spearman, mse

Native pair input (`[CLS] a [SEP] b [SEP]`, token types 0 / 1 with a WordPiece checkpoint; the
SentencePiece vocabulary's separator otherwise: tasks/registration.py), vocabulary the offline
tasks' (tasks.offline.VOCABULARY), so they mix with every offline task.
Mixture `offline_classes`: one task of each class that ships offline (pairs chatterbot_pair and
vader_pair, extractive QA wnut16_qa, tagging wnut16_ner, multiple choice chatterbot_choice), equal rates.
"""

from __future__ import annotations

import functools

from mtl_jax.data import offline_pairs, splits
from tasks import offline, offline_choice, offline_qa, registration  # noqa: F401  (registers the other classes)

_PAIRS = {
    "chatterbot_pair": ("classification", offline_pairs.chatterbot_pair, ("no", "yes"), ("question", "reply")),
    "vader_pair": ("regression", offline_pairs.vader_pair, (), ("sentence1", "sentence2")),
}


@functools.lru_cache(maxsize=None)
def _split(task: str, split: str) -> tuple:
  """'texts' (one string per field) plus 'text', the fields joined as file tasks join them (display, hashing)."""
  fields = _PAIRS[task][3]
  return tuple({**e, "text": " ".join(f"{f}: {p}" for f, p in zip(fields, e["texts"]))}
               for e in splits.get_split(_PAIRS[task][1](), split))


def examples(task: str, split: str) -> list:
  return list(_split(task, split))


for _name, (_kind, _, _labels, _fields) in sorted(_PAIRS.items()):
  registration.add_task(_name, kind=_kind, vocabulary=offline.VOCABULARY, label_names=_labels,
                        text_fields=_fields, examples_fn=functools.partial(examples, _name))

OFFLINE_CLASSES = ("chatterbot_pair", "vader_pair", "wnut16_qa", "wnut16_ner", "chatterbot_choice")
registration.add_mixture("offline_classes", [(t, 1.0) for t in OFFLINE_CLASSES])
