"""The synthetic relatedness benchmark as seqio tasks and mixtures.

Why: a controlled knob (relatedness r) for when sharing helps; see
mtl_jax/data/synthetic.py for the generator. Registered on import, for every
r in {0, .25, .5, .75, 1} and T in {2, 8, 32} (STANDARD_GRID):
  mixtures  synthetic_r{0,25,50,75,100}_t{2,8,32}      T tasks each, equal rates
  tasks     synthetic_r{R}_t{T}_task{t}                 binary classification,
            2000 train / 500 validation / 500 test examples per task
            (SyntheticConfig defaults, seed 0); metrics accuracy, f1_macro.
Registration is cheap: examples are generated only when a split is first read
(memoised by the generator).
Vocabulary: a closed word-level one (`WordVocabulary`, ids 0 pad, 1 EOS, 2+k for
'w<k>'), so no SentencePiece model or offline corpus is needed and each word is
exactly one token. Inputs are 8..24 words + EOS: TASK_FEATURE_LENGTHS 32 fits all.
"""

from __future__ import annotations

import functools

from mtl_jax.data import synthetic as syn
from mtl_jax.data.word_vocab import WordVocabulary
from tasks import registration

DEFAULT_CONFIG = syn.SyntheticConfig(num_tasks=1, relatedness=0.0)
VOCABULARY = WordVocabulary(DEFAULT_CONFIG.vocab_size)
LABEL_NAMES = tuple(f"class{k}" for k in range(DEFAULT_CONFIG.num_classes))


def config(relatedness: float, num_tasks: int) -> syn.SyntheticConfig:
  """The registered benchmark's config (generator defaults) for (r, T)."""
  return syn.SyntheticConfig(num_tasks=num_tasks, relatedness=relatedness)


def _examples(cfg: syn.SyntheticConfig, task_index: int, split: str) -> list:
  """Fresh dicts each call (callers may edit them) from the split's (text, label) pairs built once."""
  return [{"text": text, "label": label} for text, label in _pairs(cfg, task_index, split)]


@functools.lru_cache(maxsize=256)
def _pairs(cfg: syn.SyntheticConfig, task_index: int, split: str) -> tuple:
  """Why memoised: the K lanes of a seeds run (and every split a run reads) ask for the same split;
  building its texts and labels again cost ~1 CPU-s per lane of the relatedness sweep."""
  return tuple((e["text"], e["label"]) for e in syn.generate(cfg, task_index, split))


def register(relatedness: float, num_tasks: int) -> str:
  """Registers the mixture for (r, T) and its tasks; returns the mixture name."""
  cfg = config(relatedness, num_tasks)
  sizes = {s: cfg.num_examples(s) for s in syn.SPLITS}
  for t in range(num_tasks):
    registration.add_task(
        cfg.task_name(t), kind="classification", vocabulary=VOCABULARY, label_names=LABEL_NAMES,
        examples_fn=functools.partial(_examples, cfg, t), num_examples=sizes)
  registration.add_mixture(cfg.mixture_name, [(cfg.task_name(t), 1.0) for t in range(num_tasks)])
  return cfg.mixture_name


MIXTURES = tuple(register(r, t) for r in syn.STANDARD_GRID["relatedness"]
                 for t in syn.STANDARD_GRID["num_tasks"])
