"""Extractive QA decoding: doc-stride windows over a long context and the best answer span.

Why: a context longer than the input length is read as overlapping windows (each window =
question + a slice of the context, consecutive slices overlapping by `stride` tokens, as HF's
`return_overflowing_tokens` with `stride`); the answer is the best valid span over ALL windows
(start and end inside the window's context, end >= start, at most `max_answer_tokens`), scored
start_logit + end_logit, and mapped back to the original text through each token's character
offsets. SQuAD v2.0: the null answer is scored at the first token (start_logits[0] +
end_logits[0], the lowest over windows, as in HF's run_qa post-processing) and wins when it
beats the best span by more than `null_threshold`.

State: the decoding and windowing (numpy) and SQuAD's metric (mtl_jax/step/squad_metrics.py)
are here and tested; the head kind (per-token start/end logits trained with cross-entropy)
and the QA data path are not wired into the trainer yet.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np


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
