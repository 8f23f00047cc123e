"""SQuAD exact match and F1 as the official evaluation scripts compute them (v1.1 and v2.0).

Why not a library: the scores must be comparable with published SQuAD numbers, so the
normalisation is the official one (Rajpurkar et al. 2016 / 2018, evaluate-v1.1.py and
evaluate-v2.0.py): lower-case, drop ASCII punctuation (string.punctuation), drop the
articles a / an / the as whole words, collapse whitespace. EM is 1 if a normalised
prediction equals a normalised gold answer; F1 is the bag-of-tokens overlap of the
normalised texts; both take the max over the gold answers and are averaged x 100.

v2.0 differences: gold answers that normalise to '' are dropped and an unanswerable
question's only gold answer is '' (so the empty prediction scores 1, anything else 0);
F1 of two empty token lists is 1 (of one empty, 0); optional no-answer probabilities with a
threshold turn a prediction into '' when na_prob > threshold; the report splits HasAns
(questions with an answer) and NoAns.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
  """lower -> remove punctuation -> remove articles -> collapse whitespace (the scripts' order)."""
  text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
  return " ".join(_ARTICLES.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
  return normalize_answer(text).split() if text else []


def exact(gold: str, prediction: str) -> int:
  return int(normalize_answer(gold) == normalize_answer(prediction))


def f1(gold: str, prediction: str, version: str = "2.0") -> float:
  gold_toks, pred_toks = _tokens(gold), _tokens(prediction)
  if version == "2.0" and (not gold_toks or not pred_toks):
    return float(gold_toks == pred_toks)
  same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
  if same == 0:
    return 0.0
  precision, recall = same / len(pred_toks), same / len(gold_toks)
  return 2 * precision * recall / (precision + recall)


def _golds(answers: Sequence[str], version: str) -> list[str]:
  if version == "1.1":
    return list(answers)
  kept = [a for a in answers if normalize_answer(a)]
  return kept or [""]


def evaluate(golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str], version: str = "2.0",
             na_probs: Mapping[str, float] | None = None, na_threshold: float = 1.0) -> dict:
  """{'exact', 'f1', 'total'} (x 100) over the questions of `golds` (id -> gold answer texts; [] =
  unanswerable in v2.0), plus HasAns_* / NoAns_* in v2.0. A question without a prediction scores 0."""
  if version not in ("1.1", "2.0"):
    raise ValueError(f"SQuAD version {version!r}: use '1.1' or '2.0'")
  em, fs, has_ans = {}, {}, {}
  for qid, answers in golds.items():
    pred = predictions.get(qid)
    if pred is None:
      em[qid], fs[qid] = 0, 0.0
    else:
      if na_probs is not None and na_probs.get(qid, 0.0) > na_threshold:
        pred = ""
      cands = _golds(answers, version)
      em[qid] = max(exact(g, pred) for g in cands) if cands else 0
      fs[qid] = max(f1(g, pred, version) for g in cands) if cands else 0.0
    has_ans[qid] = bool([a for a in answers if normalize_answer(a)])
  out = _mean(em, fs, list(golds))
  if version == "2.0":
    for name, ids in (("HasAns", [q for q in golds if has_ans[q]]), ("NoAns", [q for q in golds if not has_ans[q]])):
      if ids:
        out.update({f"{name}_{k}": v for k, v in _mean(em, fs, ids).items()})
  return out


def _mean(em, fs, ids) -> dict:
  n = len(ids)
  return {"exact": 100.0 * sum(em[q] for q in ids) / max(n, 1), "f1": 100.0 * sum(fs[q] for q in ids) / max(n, 1),
          "total": n}
