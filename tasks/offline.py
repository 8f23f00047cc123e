"""Offline real-text tasks (data read from PyPI package archives) and their mixtures.

Sources, licences and the split rule are documented in mtl_jax/data/corpora.py and
mtl_jax/data/splits.py: each example's split is fixed by a salted hash of its
normalised text (80/10/10), so a sentence shared by two corpora is in the same
split in both; rotten_tomatoes additionally drops every sentence that also occurs
in vader_movie (same sentence pool), so the two tasks share no text at all. The
only other cross-task duplicates are 4 sentences shared by VADER domains
(amazon/movie 1, amazon/nyt 3), each in the same split in both.
Every task uses one SentencePiece vocabulary (8k unigram) trained on the union of
the tasks' *training* splits, cached under MTL_JAX_CACHE; a run that sets
`pretrained.checkpoint` uses that checkpoint's tokenizer instead ([CLS] text [SEP]),
with the same task definitions (VOCABULARY is a vocab.RunVocabulary).

  task               kind                    train  valid  test  metrics (headline first)
  vader_tweets       regression, [-1, 1]      3370    432   398  pearson, spearman, mse
  vader_movie        regression, [-1, 1]      8550   1031  1022  pearson, spearman, mse
  vader_nyt          regression, [-1, 1]      4067    554   498  pearson, spearman, mse
  vader_amazon       regression, [-1, 1]      2957    352   388  pearson, spearman, mse
  rotten_tomatoes    2-way (rotten / fresh)   5183    658   685  f1_macro, accuracy
  bbc_topic          5-way news topic         1682    228   215  f1_macro, accuracy
  wnut16_ner         BIO tagging, 21 tags     1845    222   228  span_f1, token_accuracy
  chatterbot_intent  21-way intent/topic       598     67    83  f1_macro, accuracy

VADER scores are mean human valence / 4. rotten_tomatoes is ~65% fresh;
chatterbot_intent is skewed (trivia ~34%, several classes with < 10 training
examples; 'health' has one example overall, in test, so it is never trained).
Token lengths (p50 / p99, incl. EOS): bbc ~470 / ~1480 (truncated by any usual
TASK_FEATURE_LENGTHS), wnut ~34 / ~73, the rest <= ~70 at p99
(`python -m mtl_jax.input.data_stats offline_all`). Words cut off by truncation are
dropped from training and from evaluation alike: 2% of wnut tweets exceed 64
tokens, 52% exceed 32.
Mixtures:
  quickstart   rotten_tomatoes, bbc_topic, vader_tweets (equal rates)
  offline_all  every task above, rates proportional to size capped at 3000 examples
"""

from __future__ import annotations

import functools

from mtl_jax.input import mixing
from mtl_jax.input import vocab as vocab_lib
from mtl_jax.data import corpora, fetch, splits
from tasks import registration

VOCAB_SIZE = 8000


@functools.lru_cache(maxsize=None)
def _vader(domain: str) -> tuple:
  return tuple({"text": e["text"], "score": e["score"] / 4.0} for e in corpora.load_vader(domain))


@functools.lru_cache(maxsize=None)
def _rotten_tomatoes() -> tuple:
  return tuple(splits.dedup_against(corpora.load_rotten_tomatoes(), corpora.load_vader("movie")))


@functools.lru_cache(maxsize=None)
def _wnut() -> tuple:
  index = {t: i for i, t in enumerate(corpora.WNUT_TAGS)}
  return tuple({"tokens": e["tokens"], "tags": [index[t] for t in e["tags"]],
                "text": " ".join(e["tokens"])} for e in corpora.load_wnut())


_SOURCES = {
    "vader_tweets": ("regression", lambda: _vader("tweets"), ()),
    "vader_movie": ("regression", lambda: _vader("movie"), ()),
    "vader_nyt": ("regression", lambda: _vader("nyt"), ()),
    "vader_amazon": ("regression", lambda: _vader("amazon"), ()),
    "rotten_tomatoes": ("classification", _rotten_tomatoes, corpora.RT_LABELS),
    "bbc_topic": ("classification", lambda: tuple(corpora.load_bbc()), corpora.BBC_LABELS),
    "wnut16_ner": ("tagging", _wnut, corpora.WNUT_TAGS),
    "chatterbot_intent": ("classification", lambda: tuple(corpora.load_chatterbot()),
                          corpora.CHATTERBOT_LABELS),
}


def examples(task: str, split: str) -> list:
  """The examples of one offline task's split (deterministic order), a fresh list each call."""
  return list(_split_examples(task, split))


@functools.lru_cache(maxsize=None)
def _split_examples(task: str, split: str) -> tuple:
  """Hashing every text into its split costs ~0.1 s per corpus; the corpora are immutable package
  data, so a process does it once per (task, split), not at each of a run's (or each in-process
  run's) pipeline builds and fingerprints."""
  _, load, _ = _SOURCES[task]
  return tuple(splits.get_split(list(load()), split))


def _training_text():
  for task in sorted(_SOURCES):
    for ex in examples(task, "train"):
      yield ex["text"]


# The run's vocabulary: this SentencePiece model, or `pretrained.checkpoint`'s tokenizer.
VOCABULARY = vocab_lib.RunVocabulary(vocab_lib.TrainedSentencePieceVocabulary(
    fetch.cache_dir() / "spm" / f"offline_unigram_{VOCAB_SIZE}_v1.model",
    texts_fn=_training_text, vocab_size=VOCAB_SIZE))

for _name, (_kind, _, _labels) in sorted(_SOURCES.items()):
  registration.add_task(
      _name, kind=_kind, vocabulary=VOCABULARY, label_names=_labels,
      examples_fn=functools.partial(examples, _name))

registration.add_mixture("quickstart", [(t, 1.0) for t in ("rotten_tomatoes", "bbc_topic", "vader_tweets")])
registration.add_mixture(
    "offline_all", [(t, mixing.proportional(maximum=3000)) for t in sorted(_SOURCES)])
