"""Task families of the offline catalogue and the pre-finetuning mixtures built from them.

For a held-out target (Padmakumar et al. 2022), pre-finetune on (a) every offline task except the
targets (`pft_all_but_targets`: a large multi-task mixture that never sees a target), or (b) the
target's own family minus the target (`pft_family_<target>`: a small related subset), then fine-tune
on the target. Families group tasks by what they predict:
  sentiment  rotten_tomatoes, vader_tweets, vader_movie, vader_nyt, vader_amazon
  topic      bbc_topic, chatterbot_intent
  entities   wnut16_ner
Rates: proportional to size, capped at 3000 examples (as offline_all).
"""

from __future__ import annotations

from mtl_jax.input import mixing
from tasks import offline, registration

FAMILIES = {
    "sentiment": ("rotten_tomatoes", "vader_tweets", "vader_movie", "vader_nyt", "vader_amazon"),
    "topic": ("bbc_topic", "chatterbot_intent"),
    "entities": ("wnut16_ner",),
}
TARGETS = ("rotten_tomatoes", "bbc_topic")  # the held-out targets of gin/experiments/prefinetune_minilm.gin


def family_of(task: str) -> str:
  return next(name for name, tasks in FAMILIES.items() if task in tasks)


def _rates(tasks):
  return [(t, mixing.proportional(maximum=3000)) for t in sorted(tasks)]


assert sorted(t for ts in FAMILIES.values() for t in ts) == sorted(offline._SOURCES)
registration.add_mixture("pft_all_but_targets", _rates(set(offline._SOURCES) - set(TARGETS)))
for _target in TARGETS:
  registration.add_mixture(f"pft_family_{_target}", _rates(set(FAMILIES[family_of(_target)]) - {_target}))
