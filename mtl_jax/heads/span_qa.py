"""Extractive QA decoding: doc-stride windows over a long context and the best answer span.

Why: a context longer than the input length is read as overlapping windows (each window =
question + a slice of the context, consecutive slices overlapping by `stride` tokens, as HF's
`return_overflowing_tokens` with `stride`); the answer is the best valid span over ALL windows
(start and end inside the window's context, end >= start, at most `max_answer_tokens`), scored
start_logit + end_logit, and mapped back to the original text through each token's character
offsets. SQuAD v2.0: the null answer is scored at the first token (start_logits[0] +
end_logits[0], the lowest over windows, as in HF's run_qa post-processing) and wins when it
beats the best span by more than `null_threshold`.

The head kind `SpanQA`: columns 0 / 1 of the stacked per-task layer's per-token logits are the
start / end logits (label names ('start', 'end')); the loss is the mean of the start and end
cross-entropies over the row's real tokens, targets 'label' (start position) and 'score' (end
position; 0 / 0 = the null answer at the first token). One row = one window
(tasks/registration.py `_qa_windows`); 'tags' holds each context token's word index (-2
elsewhere in a question's first window, -1 in its others), so the task's metric (`squad_metric`) regroups a question's windows, decodes
the best span over them and maps it to the context's characters through the words' offsets.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np
import optax

from mtl_jax.heads.base import HeadKind
from mtl_jax.step import squad_metrics


class Window(NamedTuple):
  start: int  # first context token of the window (index into the context's tokens)
  stop: int   # one past the last


def windows(num_context_tokens: int, max_context_tokens: int, stride: int) -> list[Window]:
  """Context token ranges of the windows: each holds max_context_tokens (the last fewer), and each
  next one starts `max_context_tokens - stride` later (stride = overlap, as HF's)."""
  if max_context_tokens <= 0 or not 0 <= stride < max_context_tokens:
    raise ValueError(f"need max_context_tokens > stride >= 0, got {max_context_tokens} and stride {stride}")
  out, start = [], 0
  while True:
    stop = min(start + max_context_tokens, num_context_tokens)
    out.append(Window(start, stop))
    if stop >= num_context_tokens:
      return out
    start += max_context_tokens - stride


class Answer(NamedTuple):
  text: str
  char_start: int   # -1 for the null answer
  char_end: int
  score: float      # start + end logit of the span (the null score for the null answer)


def best_span(context: str, window_logits: Sequence[tuple[np.ndarray, np.ndarray]],
              window_offsets: Sequence[Sequence[tuple[int, int] | None]], max_answer_tokens: int = 30,
              null_threshold: float | None = None, top_k: int = 20) -> Answer:
  """The best answer over the windows of one question.

  window_logits[w] = (start [L], end [L]) of window w; window_offsets[w][i] = (char start, char end)
  in `context` of token i, or None where token i is not context (question, specials, padding).
  null_threshold None: SQuAD v1.1 (always a span); else v2.0 (null when null - best > threshold).
  """
  best, null = None, np.inf
  for (start, end), offsets in zip(window_logits, window_offsets):
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    null = min(null, start[0] + end[0])
    for i in np.argsort(-start)[:top_k]:
      for j in np.argsort(-end)[:top_k]:
        if i >= len(offsets) or j >= len(offsets) or offsets[i] is None or offsets[j] is None:
          continue
        if j < i or j - i + 1 > max_answer_tokens:
          continue
        score = start[i] + end[j]
        if best is None or score > best.score:
          a, b = offsets[i][0], offsets[j][1]
          best = Answer(context[a:b], a, b, float(score))
  if best is None or (null_threshold is not None and null - best.score > null_threshold):
    return Answer("", -1, -1, float(null))
  return best


def check_answer(context: str, text: str, char_start: int, where: str) -> None:
  """A gold answer must be the context's text at its offset: one line naming `where` (file:line) if not."""
  if not isinstance(char_start, int) or isinstance(char_start, bool) or char_start < 0 or \
      context[char_start:char_start + len(text)] != text:
    found = context[char_start:char_start + len(text)] if isinstance(char_start, int) and char_start >= 0 else ""
    raise ValueError(f"{where}: answer {text!r} is not the context's text at offset {char_start!r} (there: "
                     f"{found!r}); fix answer_start")


class SpanQA(HeadKind):
  name = "span_qa"

  def example_loss(self, out, batch):
    real = batch["input_mask"] > 0
    start = jnp.where(real, out.token_logits[..., 0], -1e9)
    end = jnp.where(real, out.token_logits[..., 1], -1e9)
    return 0.5 * (optax.softmax_cross_entropy_with_integer_labels(start, batch["label"])
                  + optax.softmax_cross_entropy_with_integer_labels(end, batch["score"].astype(jnp.int32)))

  def predict(self, out):
    """[B, L, 2] start / end logits; the answer is decoded over a question's windows by squad_metric."""
    return out.token_logits[..., :2]

  def metric_pair(self, prediction, example, label_names):
    real = int(np.asarray(example["input_mask"]).sum())
    return np.asarray(example["tags"])[:real], np.asarray(prediction)[:real]


def words(context: str) -> list[tuple[int, int]]:
  """Character (start, end) of each whitespace-separated word: the unit answers are mapped to."""
  return [(m.start(), m.end()) for m in re.finditer(r"\S+", context)]


def decode(examples: Sequence[dict], row_tags: Sequence[np.ndarray], row_logits: Sequence[np.ndarray],
           max_answer_tokens: int = 30, null_threshold: float | None = None) -> list[Answer]:
  """Each question's answer from its windows' rows (in order; a question's first window has tags -2
  outside the context): the best span over the windows, in the context's characters."""
  groups = []
  for tags, logits in zip(row_tags, row_logits):
    tags = np.asarray(tags)
    if not groups or (tags == -2).any():
      groups.append([])
    groups[-1].append((tags, np.asarray(logits)))
  if len(groups) != len(examples):
    raise ValueError(f"span_qa.decode: {len(groups)} window groups for {len(examples)} questions; the rows "
                     "must be the questions' windows in order")
  out = []
  for ex, rows in zip(examples, groups):
    spans = words(ex["context"])
    offsets = [[spans[w] if w >= 0 else None for w in tags] for tags, _ in rows]
    out.append(best_span(ex["context"], [(lg[:, 0], lg[:, 1]) for _, lg in rows], offsets, max_answer_tokens,
                         null_threshold))
  return out


def _groups(row_tags) -> list[list[np.ndarray]]:
  groups = []
  for tags in row_tags:
    tags = np.asarray(tags)
    if not groups or (tags == -2).any():
      groups.append([])
    groups[-1].append(tags)
  return groups


def _split_of_rows(examples_fn, row_tags) -> list[dict]:
  """The split whose questions these rows are (seqio calls a metric fn with rows only): the one with as
  many questions as window groups whose contexts' last words the groups reach (validation first)."""
  groups = _groups(row_tags)
  reach = [max((int(t.max()) for t in g), default=-1) for g in groups]
  for split in ("validation", "test", "train"):
    examples = list(examples_fn(split))
    if len(examples) == len(groups) and all(r <= len(words(ex["context"])) - 1 for r, ex in zip(reach, examples)):
      return examples
  raise ValueError(f"span_qa: {len(groups)} questions' rows match no split of the task; the rows must be one "
                   "split's windows in order")


def squad_metric(examples_fn: Callable[[str], Sequence[dict]], max_answer_tokens: int = 30,
                 null_threshold: float = 0.0) -> Callable:
  """A seqio metric fn over a QA task's rows of one split, in order (validation; the test split at the
  end of a run): regroups each question's windows (a question's first window has tags -2 outside the
  context), decodes the best span over them
  and scores SQuAD EM / F1 (v2.0 when the split has unanswerable questions, else v1.1)."""
  def metric(targets, predictions):
    examples = _split_of_rows(examples_fn, targets)
    v2 = any(not ex["answers"] for ex in examples)
    answers = decode(examples, targets, predictions, max_answer_tokens, null_threshold if v2 else None)
    golds, preds = {}, {}
    for i, (ex, answer) in enumerate(zip(examples, answers)):
      qid = str(ex.get("id", i))
      golds[qid], preds[qid] = [a["text"] for a in ex["answers"]], answer.text
    scores = squad_metrics.evaluate(golds, preds, "2.0" if v2 else "1.1")
    # fractions like every other metric (the official x 100 / 100): 'f1' is the task's headline
    return {k: (v if k.endswith("total") else v / 100.0) for k, v in scores.items()}
  return metric
