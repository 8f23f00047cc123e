"""SQuAD EM / F1 equal the official scripts' (transcribed here from evaluate-v2.0.py's description, and
hand-computed numbers); doc-stride windows and the best span over windows; bad gold offsets are one line."""

import collections
import re
import string

import numpy as np
import pytest

from mtl_jax.heads import span_qa
from mtl_jax.step import squad_metrics


# ------------------------------------------------------------------ the official v2.0 script, as published
def _official_normalize(s):
  def remove_articles(text):
    return re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", text)

  def white_space_fix(text):
    return " ".join(text.split())

  def remove_punc(text):
    exclude = set(string.punctuation)
    return "".join(ch for ch in text if ch not in exclude)

  return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_tokens(s):
  return _official_normalize(s).split() if s else []


def _official_f1(gold, pred):
  g, p = _official_tokens(gold), _official_tokens(pred)
  common = collections.Counter(g) & collections.Counter(p)
  num_same = sum(common.values())
  if len(g) == 0 or len(p) == 0:
    return int(g == p)
  if num_same == 0:
    return 0
  precision, recall = num_same / len(p), num_same / len(g)
  return 2 * precision * recall / (precision + recall)


def _official_eval(dataset, preds, na_probs=None, thresh=1.0):
  exact, f1, has = {}, {}, {}
  for qid, answers in dataset.items():
    golds = [a for a in answers if _official_normalize(a)] or [""]
    has[qid] = bool([a for a in answers if _official_normalize(a)])
    exact[qid] = max(int(_official_normalize(a) == _official_normalize(preds[qid])) for a in golds)
    f1[qid] = max(_official_f1(a, preds[qid]) for a in golds)
    if na_probs is not None and na_probs[qid] > thresh:
      exact[qid] = f1[qid] = float(not has[qid])
  out = {"exact": 100.0 * sum(exact.values()) / len(exact), "f1": 100.0 * sum(f1.values()) / len(f1),
         "total": len(exact)}
  for name, ids in (("HasAns", [q for q in dataset if has[q]]), ("NoAns", [q for q in dataset if not has[q]])):
    out[f"{name}_exact"] = 100.0 * sum(exact[q] for q in ids) / len(ids)
    out[f"{name}_f1"] = 100.0 * sum(f1[q] for q in ids) / len(ids)
    out[f"{name}_total"] = len(ids)
  return out


GOLD = {
    "articles": ["the Denver Broncos"], "punct": ["Denver, Colo."], "case_space": ["Super   Bowl 50"],
    "partial": ["Santa Clara, California"], "several": ["Carolina Panthers", "the Panthers"],
    "wrong": ["Levi's Stadium"], "noans_ok": [], "noans_bad": [], "empty_gold": ["  ", "the"],
    "an_article": ["an apple a day"],
}
PRED = {
    "articles": "Denver Broncos", "punct": "denver colo", "case_space": "super bowl 50.",
    "partial": "Santa Clara", "several": "Panthers", "wrong": "Sports Authority Field", "noans_ok": "",
    "noans_bad": "Levi's", "empty_gold": "", "an_article": "apple day",
}


def test_squad_v2_equals_the_official_script_and_hand_numbers():
  got = squad_metrics.evaluate(GOLD, PRED, "2.0")
  want = _official_eval(GOLD, PRED)
  assert got.keys() == want.keys()
  for k in want:
    assert got[k] == pytest.approx(want[k]), k
  # by hand: EM 1 for articles, punct, case_space, several, noans_ok, empty_gold, an_article (7 of 10);
  # partial F1 = 2 * (1 * 2/3) / (1 + 2/3) = 0.8
  assert got["exact"] == pytest.approx(70.0) and got["total"] == 10
  assert got["f1"] == pytest.approx(100.0 * (7 + 0.8) / 10)
  assert got["NoAns_total"] == 3 and got["NoAns_exact"] == pytest.approx(200.0 / 3)
  assert got["HasAns_total"] == 7 and got["HasAns_f1"] == pytest.approx(100.0 * (5 + 0.8) / 7)
  probs = {q: (0.9 if q in ("noans_bad", "wrong") else 0.1) for q in GOLD}
  thresholded = squad_metrics.evaluate(GOLD, PRED, "2.0", na_probs=probs, na_threshold=0.5)
  assert thresholded["exact"] == pytest.approx(_official_eval(GOLD, PRED, probs, 0.5)["exact"]) == 80.0


def test_squad_v1_takes_every_gold_and_scores_empty_as_zero():
  gold = {"q1": ["the Broncos", "Denver Broncos"], "q2": ["1990"]}
  pred = {"q1": "Broncos", "q2": ""}
  got = squad_metrics.evaluate(gold, pred, "1.1")
  assert got == {"exact": 50.0, "f1": pytest.approx(100.0 * (1.0 + 0.0) / 2), "total": 2}
  assert squad_metrics.normalize_answer("The  Quick, brown-fox!") == "quick brownfox"


def _context(n):
  words = [f"w{i}" for i in range(n)]
  text = " ".join(words)
  offsets, pos = [], 0
  for w in words:
    offsets.append((pos, pos + len(w)))
    pos += len(w) + 1
  return text, offsets


def test_windows_and_the_answer_in_the_second_window():
  assert span_qa.windows(50, 20, 5) == [(0, 20), (15, 35), (30, 50)]
  assert span_qa.windows(10, 20, 5) == [(0, 10)]
  text, word_offsets = _context(50)
  question_len = 4  # [CLS] q q [SEP] before the context tokens
  logits, offsets = [], []
  for w in span_qa.windows(50, 20, 5):
    length = question_len + (w.stop - w.start) + 1
    start, end = np.zeros(length), np.zeros(length)
    offs = [None] * question_len + [word_offsets[k] for k in range(w.start, w.stop)] + [None]
    if w.start == 0:
      start[question_len + 3], end[question_len + 4] = 2.0, 2.0  # a weaker span in window 1
    if w.start <= 25 and 27 <= w.stop:
      start[question_len + 25 - w.start], end[question_len + 26 - w.start] = 5.0, 5.0  # the answer: w25 w26
    start[0] = end[0] = 1.0
    logits.append((start, end))
    offsets.append(offs)
  assert [w for w in span_qa.windows(50, 20, 5) if w.start <= 25 and 27 <= w.stop] == [(15, 35)]
  answer = span_qa.best_span(text, logits, offsets, max_answer_tokens=5)
  assert answer.text == "w25 w26" and answer.score == 10.0 and text[answer.char_start:answer.char_end] == "w25 w26"
  assert span_qa.best_span(text, logits, offsets, max_answer_tokens=1).text in ("w25", "w26", "w3", "w4")
  assert span_qa.best_span(text, logits, offsets, null_threshold=-20.0).text == ""  # v2: null preferred
  assert span_qa.best_span(text, logits, offsets, null_threshold=0.0).text == "w25 w26"


def test_gold_offset_not_matching_the_context_is_one_line():
  span_qa.check_answer("Denver won.", "Denver", 0, "qa.jsonl:3")
  with pytest.raises(ValueError, match=r"^qa.jsonl:3: answer 'won' is not the context's text at offset 2 "
                                       r"\(there: 'nve'\); fix answer_start$"):
    span_qa.check_answer("Denver won.", "won", 2, "qa.jsonl:3")
