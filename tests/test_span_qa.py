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


# ------------------------------------------------------------------ the QA task path
def _qa_task(examples, name="qa_probe"):
  import seqio
  from tasks import offline, registration
  registration.add_task(name, kind="span_qa", vocabulary=offline.VOCABULARY, label_names=("start", "end"),
                        examples_fn=lambda split: examples)
  return seqio.get_mixture_or_task(name)


def test_windows_rows_carry_word_indices_and_the_answer_in_its_window(clean_gin):
  from tasks import offline
  context = " ".join(f"word{i}" for i in range(60)) + " Denver Broncos won"
  ex = {"text": "who won?", "context": context,
        "answers": [{"text": "Denver Broncos", "answer_start": context.index("Denver")}]}
  task = _qa_task([ex, {"text": "who lost?", "context": "nobody lost today", "answers": []}])
  rows = list(task.get_dataset({"inputs": 40}, split="validation", shuffle=False).as_numpy_iterator())
  spm = offline.VOCABULARY.default
  q = list(spm.encode("who won?"))
  assert len(rows) >= 3 and rows[-1]["label"] == 0 and rows[-1]["score"] == 0  # the no-answer question
  answered = [r for r in rows[:-1] if r["label"] > 0]
  assert len(answered) >= 1 and all(len(r["inputs"]) <= 40 for r in rows)
  for r in answered:
    s, e = int(r["label"]), int(r["score"])
    assert r["inputs"][:len(q)].tolist() == q and r["inputs"][len(q)] == spm.eos_id  # question </s> context
    assert set(r["tags"][s:e + 1].tolist()) == {60, 61}  # the answer's words
    assert r["inputs"][s:e + 1].tolist() == list(spm.encode("Denver Broncos"))
  firsts = [bool((r["tags"] == -2).any()) for r in rows]
  assert firsts == [True] + [False] * (len(rows) - 2) + [True]  # -2 marks a question's first window
  assert rows[0]["tags"][rows[0]["tags"] >= 0][0] == 0 and rows[1]["tags"][rows[1]["tags"] >= 0][0] > 0


def test_metric_regroups_windows_and_scores_squad():
  ex1 = {"text": "q", "context": "a b c d e f", "answers": [{"text": "c d", "answer_start": 4}], "id": "1"}
  ex2 = {"text": "q", "context": "x y", "answers": [], "id": "2"}
  metric = span_qa.squad_metric(lambda split: [ex1, ex2])
  # ex1 in two windows: [q </s> a b c d] and [q </s> c d e f]; ex2 one window
  t1, t2, t3 = np.array([-2, -2, 0, 1, 2, 3]), np.array([-1, -1, 2, 3, 4, 5]), np.array([-2, -2, 0, 1])
  lg1 = np.zeros((6, 2)); lg2 = np.zeros((6, 2)); lg3 = np.zeros((4, 2))
  lg2[2, 0] = lg2[3, 1] = 4.0          # window 2: 'c d'
  lg1[5, 0] = lg1[5, 1] = 1.0          # window 1: 'd', weaker
  lg3[0] = 9.0                          # ex2: the null answer wins
  got = metric([t1, t2, t3], [lg1, lg2, lg3])
  assert got["exact"] == 1.0 and got["f1"] == 1.0 and got["HasAns_total"] == 1 and got["NoAns_exact"] == 1.0


@pytest.mark.parametrize("bad, match", [
    ({"text": " ", "context": "abc", "answers": []}, "example 0: empty question"),
    ({"text": "q", "context": "Denver won", "answers": [{"text": "won", "answer_start": 3}]},
     "example 0: answer 'won' is not the context's text at offset 3"),
])
def test_bad_qa_examples_are_one_line(clean_gin, bad, match):
  task = _qa_task([bad], "qa_bad")
  with pytest.raises(ValueError, match=match):
    task.get_dataset({"inputs": 16}, split="train", shuffle=False)


@pytest.mark.e2e  # a run through the binary (default-suite budget)
def test_wnut16_qa_trains_through_the_binary(clean_gin, tmp_path):
  import json
  from conftest import ONE_DEVICE, TINY_ARGS, run_main
  model_dir = tmp_path / "run"
  run_main(*TINY_ARGS, ONE_DEVICE, "--gin_file=gin/tasks/offline_qa.gin", f"--gin.MODEL_DIR='{model_dir}'",
           "--gin.TRAIN_STEPS=4", "--gin.trainer.train.eval_period=4")
  task = json.loads((model_dir / "results.json").read_text())["tasks"]["wnut16_qa"]
  assert 0.0 <= task["exact"] <= task["f1"] <= 1.0 and task["HasAns_total"] + task["NoAns_total"] == task["total"]
  assert task["total"] > 100 and task["headline"] == task["f1"]
  from mtl_jax import predict
  predictor = predict.load(model_dir)
  context = "Heading to see Taylor Swift in New York tonight with @amy"
  out = predictor.predict([{"question": "which person is mentioned?", "context": context},
                           "which geo loc is mentioned?\t" + context], tasks=["wnut16_qa"])
  for row in out:
    answer = row["wnut16_qa"]
    assert answer["answer"] == "" or context[answer["start"]:answer["start"] + len(answer["answer"])] == answer["answer"]
  with pytest.raises(ValueError, match=r"^in.txt:2: empty question"):
    predictor.predict(["q\t" + context, "\t" + context], tasks=["wnut16_qa"], source="in.txt")


def _qa_rows(*rows):
  import json
  return "".join(json.dumps(r) + "\n" for r in rows)


GOOD_QA = [{"question": "who won?", "context": "Denver won the game", "answers": [{"text": "Denver", "answer_start": 0}]},
           {"question": "what was won?", "context": "Denver won the game",
            "answers": {"text": ["the game"], "answer_start": [11]}},
           {"question": "who lost?", "context": "nobody lost", "answers": []}]


def test_file_task_qa_reads_squad_style_answers(clean_gin, tmp_path):
  from tasks import from_files
  path = tmp_path / "qa.jsonl"
  path.write_text(_qa_rows(*GOOD_QA))
  from_files.task(name="qa_file", kind="span_qa", train=str(path), validation=str(path), test=str(path))
  examples, labels = from_files.SPECS["qa_file"].read()
  assert labels == ("start", "end")
  assert [e["answers"] for e in examples["validation"]] == [
      [{"text": "Denver", "answer_start": 0}], [{"text": "the game", "answer_start": 11}], []]
  assert from_files.SPECS["qa_file"].input_example({"question": "who?", "context": "x y"}) == {
      "text": "who?", "context": "x y", "answers": []}


@pytest.mark.parametrize("bad, expected", [
    ({"question": "q", "context": "Denver won", "answers": [{"text": "won", "answer_start": 3}]},
     "2: answer 'won' is not the context's text at offset 3 (there: 'ver'); fix answer_start"),
    ({"question": "  ", "context": "Denver won", "answers": []}, "2: empty question in 'question'; drop the row or fill it"),
])
def test_bad_qa_rows_are_one_line_and_write_nothing(tmp_path, capsys, bad, expected):
  from mtl_jax import train
  from conftest import ONE_DEVICE
  path = tmp_path / "bad.jsonl"
  path.write_text(_qa_rows(GOOD_QA[0], bad))
  gin_file = tmp_path / "bad.gin"
  gin_file.write_text("\n".join([
      "import tasks.from_files", "bad/from_files.task.name = 'bad_qa'", "bad/from_files.task.kind = 'span_qa'",
      f"bad/from_files.task.train = {str(path)!r}", "MIXTURE_OR_TASK_NAME = @bad/from_files.task()"]) + "\n")
  model_dir = tmp_path / "never"
  capsys.readouterr()
  rc = train.main(["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
                   f"--gin_file={gin_file}", "--gin.TRAIN_STEPS=2", f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE])
  err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("mtl-train")]
  assert rc == 2 and err == [f"mtl-train: error: {path}:{expected}"] and not model_dir.exists()
