"""Multiple choice: one score per choice, softmax over the example's choices, accuracy.

Layout (tasks/registration.py `_pack_choices`), gin `choice_encoding.encoding`:
  'pairs' (default)  one row holds the example's (context, choice_i) pairs one after the other, each a
                     native pair (`[CLS] context [SEP] choice_i [SEP]` + its token types, pairs.py, cut
                     longest-first to length // n_choices); 'tags' = pair_tag(i) = -100 - i on EVERY token
                     of pair i. The model (models/choice_pairs.py) reads those tags as segments: block-
                     diagonal attention and positions restarting per pair, so each pair is encoded as if
                     alone in its own row (as packing keeps examples apart).
  'one_row'          the old listwise layout `[CLS] context [SEP] choice_0 [SEP] choice_1 [SEP] ...`, tags =
                     i on choice i's tokens only (-1 elsewhere); choices attend to each other.
A choice's score is its task's scorer (column 0 of the stacked head, [D] + bias) applied to the mean
of its tokens' states (its pair's tokens, or its choice tokens), i.e. the masked mean of the per-token
logits; slots without tokens (fewer choices than others in the batch) are masked out of the softmax,
so 2, 3 and 4 choices mix in one batch. Why choices stay in one row: the batch is a fixed [B, L]
mixing every task's rows, and a choice group split over two rows or batches would have no softmax.
"""

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl_jax.heads.base import HeadKind

MAX_CHOICES = 8
PAIR_TAG = -100  # tags <= PAIR_TAG: per-pair layout, pair i's tokens carry PAIR_TAG - i
ENCODINGS = ("pairs", "one_row")


@gin.configurable("choice_encoding")
def encoding(encoding: str = "pairs") -> str:  # noqa: A002  the gin parameter's name
  """How a multiple-choice example becomes a row: 'pairs' (each (context, choice) pair on its own) or 'one_row'."""
  if encoding not in ENCODINGS:
    raise ValueError(f"choice_encoding.encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
  return encoding


def pair_tag(i):
  """The tag on every token of the (context, choice_i) pair in the per-pair layout."""
  return PAIR_TAG - i


def choice_index(tags, xp=jnp):
  """Each token's choice index in either layout (< 0: no choice)."""
  return xp.where(tags <= PAIR_TAG, PAIR_TAG - tags, tags)


def choice_scores(token_scores, tags, xp=jnp):
  """[B, L] per-token scores, [B, L] choice index per token -> ([B, K] mean score, [B, K] present)."""
  onehot = (choice_index(tags, xp)[..., None] == xp.arange(MAX_CHOICES)).astype(token_scores.dtype)  # [B, L, K]
  count = onehot.sum(-2)
  total = (onehot * token_scores[..., None]).sum(-2)
  return total / xp.maximum(count, 1.0), count > 0


class MultipleChoice(HeadKind):
  name = "multiple_choice"

  def example_loss(self, out, batch):
    scores, present = choice_scores(out.token_logits[..., 0], batch["tags"])
    logits = jnp.where(present, scores, -1e9)
    label = jnp.clip(batch["label"], 0, MAX_CHOICES - 1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, label)

  def predict(self, out):
    """Per-token scores [B, L]; the choice is read with the example's tags (`choose`)."""
    return out.token_logits[..., 0]

  def metric_pair(self, prediction, example, label_names):
    return int(example["label"]), choose(prediction, example["tags"])[0]


def choose(token_scores, tags) -> tuple[int, float]:
  """(best choice, its softmax probability over the present choices) for one example, in numpy."""
  scores, present = choice_scores(np.asarray(token_scores, np.float64)[None], np.asarray(tags)[None], np)
  scores, present = scores[0], present[0]
  if not present.any():
    return 0, 0.0
  z = np.where(present, scores - scores[present].max(), -np.inf)
  p = np.exp(z) / np.exp(z).sum()
  best = int(np.argmax(np.where(present, scores, -np.inf)))
  return best, float(p[best])
