"""SQuAD v1.1 / v2.0, HellaSwag and PIQA from TFDS (tasks/tfds_qa_choice.py) under tfds.testing.mock_data:
the examples reach the QA windows / MC rows as the TFDS records say, SQuAD v2's unanswerable questions
score through the null answer (HasAns / NoAns), bad records are one line, unprepared data never downloads.

mock_data's random records do not hold together (answer offsets outside the context, HellaSwag labels
past its endings), so `as_dataset_fn` serves hand-made records in the builders' own feature spec."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from mtl_jax.heads import multiple_choice, span_qa
from mtl_jax.input import task_info
from tasks import offline
import tasks.tfds_qa_choice as tqc

CONTEXT = "The Denver Broncos won Super Bowl 50 in Santa Clara."
SQUAD = [
    {"id": "q1", "title": "SB", "context": CONTEXT, "question": "Who won?",
     "answers": {"text": ["Denver Broncos", "The Denver Broncos"], "answer_start": [4, 0]}},
    {"id": "q2", "title": "SB", "context": CONTEXT, "question": "Where was it?",
     "answers": {"text": ["Santa Clara"], "answer_start": [40]}},
]
SQUAD_V2 = [dict(r, is_impossible=False, plausible_answers={"text": [], "answer_start": []}) for r in SQUAD] + [
    {"id": "q3", "title": "SB", "context": CONTEXT, "question": "Who lost?", "is_impossible": True,
     "answers": {"text": [], "answer_start": []},
     "plausible_answers": {"text": ["Santa"], "answer_start": [40]}}]
HELLASWAG = [
    {"context": "A man picks up a guitar. He", "endings": ["plays a song.", "eats it.", "flies away.", "sleeps."],
     "label": 0, "activity_label": "Music", "split_type": "indomain", "source_id": "a"},
    {"context": "She opens the door and", "endings": ["walks out.", "melts.", "sings to a rock.", "swims."],
     "label": 0, "activity_label": "Home", "split_type": "indomain", "source_id": "b"},
]
PIQA = [{"id": "p1", "goal": "Cool hot soup", "sol1": "Blow on it", "sol2": "Heat it more", "label": 0},
        {"id": "p2", "goal": "Dry wet hands", "sol1": "Wash them", "sol2": "Use a towel", "label": 1}]
CONLL = [{"tokens": ["EU", "rejects", "German", "call"], "ner": [3, 0, 7, 0], "pos": [0, 0, 0, 0],
          "chunks": [0, 0, 0, 0]}]
RECORDS = {"squad/v1.1": SQUAD, "squad/v2.0": SQUAD_V2, "hellaswag": HELLASWAG, "piqa": PIQA, "conll2003/conll2003": CONLL}


def _serve(records):
  def as_dataset(self, split, *args, **kwargs):
    rows = records[self.info.full_name.rsplit("/", 1)[0]]
    features = self.info.features
    return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=features.get_tensor_spec())
  return as_dataset


@pytest.fixture
def served(tmp_path):
  def serve(records):
    for fn in tqc.EXAMPLES.values():
      fn.cache_clear()
    return tfds.testing.mock_data(as_dataset_fn=_serve(records), data_dir=str(tmp_path))
  yield serve
  for fn in tqc.EXAMPLES.values():
    fn.cache_clear()


def _rows(name, split="test", length=48):  # test = TFDS validation (train / validation: the carve)
  import seqio
  ds = seqio.get_mixture_or_task(name).get_dataset({"inputs": length}, split=split, shuffle=False)
  return list(ds.as_numpy_iterator())


def test_catalogue():
  assert task_info.get("squad_v2").kind == "span_qa" and task_info.get("hellaswag").kind == "multiple_choice"
  assert task_info.get("hellaswag").label_names == ("ending1", "ending2", "ending3", "ending4")
  import seqio
  assert tuple(seqio.get_mixture_or_task("piqa").splits) == ("train", "validation", "test")


def test_train_and_dev_are_the_carve_of_tfds_train_and_test_is_tfds_validation(served):
  from mtl_jax.data import splits
  contexts = [f"Paragraph number {i} about the Denver Broncos." for i in range(40)]
  records = [dict(SQUAD[0], id=f"q{i}-{k}", context=c, answers={"text": ["Denver Broncos"], "answer_start": [c.index("Denver")]})
             for i, c in enumerate(contexts) for k in range(2)]  # two questions per paragraph
  with served({**RECORDS, "squad/v1.1": records}):
    train, dev, test = (tqc.EXAMPLES["squad_v1"](s) for s in ("train", "validation", "test"))
  want_dev = {c for c in contexts if splits.carved_split(c) == "validation"}
  assert 0 < len(want_dev) < len(contexts)
  assert {e["context"] for e in dev} == want_dev and {e["context"] for e in train} == set(contexts) - want_dev
  assert len(train) + len(dev) == len(test) == 80  # a paragraph's questions on one side; test = all of TFDS validation


def test_conll_tags_are_tfds_names_and_reach_first_pieces(served):
  import tensorflow_datasets as tfds_
  names = tfds_.builder_cls("conll2003")(data_dir="/nonexistent").info.features["ner"].feature.names
  assert tuple(names) == tqc.CONLL_TAGS == task_info.get("conll2003_ner").label_names
  spm = offline.VOCABULARY.default
  with served(RECORDS):
    (row,) = _rows("conll2003_ner", "test")
  first_pieces, pos = [], 0
  for word in CONLL[0]["tokens"]:
    first_pieces.append(pos)
    pos += len(spm.encode(word))
  assert row["tags"][first_pieces].tolist() == CONLL[0]["ner"]


def test_squad_records_become_windows_and_v2_scores_the_null_answer(served):
  with served(RECORDS):
    assert tqc.EXAMPLES["squad_v1"]("test")[0] == {
        "text": "Who won?", "context": CONTEXT, "id": "q1",
        "answers": [{"text": "Denver Broncos", "answer_start": 4}, {"text": "The Denver Broncos", "answer_start": 0}]}
    assert tqc.EXAMPLES["squad_v2"]("test")[2]["answers"] == []  # plausible answers are not gold
    rows = _rows("squad_v2")
  spm = offline.VOCABULARY.default
  assert len(rows) == 3
  s, e = int(rows[0]["label"]), int(rows[0]["score"])
  assert rows[0]["inputs"][s:e + 1].tolist() == list(spm.encode("Denver Broncos"))  # the first gold answer
  assert rows[2]["label"] == 0 and rows[2]["score"] == 0  # unanswerable: the null answer at the first token
  # a model that points at each first gold answer, and at null for q3: EM = F1 = 1, NoAns scored
  logits = []
  for r in rows:
    lg = np.zeros((len(r["inputs"]), 2))
    lg[int(r["label"]), 0] = lg[int(r["score"]), 1] = 5.0
    logits.append(lg)
  with served(RECORDS):
    metric = span_qa.squad_metric(tqc.EXAMPLES["squad_v2"])
    got = metric([r["tags"] for r in rows], logits)
  assert got["exact"] == got["f1"] == 1.0 and got["HasAns_total"] == 2 and got["NoAns_total"] == 1
  wrong = [lg.copy() for lg in logits]
  wrong[2][:] = 0.0
  wrong[2][-3, 0] = wrong[2][-2, 1] = 9.0  # q3 answered with a span: NoAns exact 0
  with served(RECORDS):
    got = span_qa.squad_metric(tqc.EXAMPLES["squad_v2"])([r["tags"] for r in rows], wrong)
  assert got["NoAns_exact"] == 0.0 and got["HasAns_exact"] == 1.0 and got["exact"] == pytest.approx(2 / 3)


def test_hellaswag_and_piqa_rows_tag_each_choice(served):
  spm = offline.VOCABULARY.default
  with served(RECORDS):
    hs, pq = _rows("hellaswag", length=128), _rows("piqa", length=128)  # every pair whole
  for rows, records, key in ((hs, HELLASWAG, "endings"), (pq, PIQA, None)):
    assert len(rows) == 2
    for r, rec in zip(rows, records):
      choices = rec[key] if key else [rec["sol1"], rec["sol2"]]
      assert int(r["label"]) == rec["label"]
      for j, c in enumerate(choices):  # per-pair layout: choice j = pair j's type-1 tokens before its </s>
        on = (r["tags"] == multiple_choice.pair_tag(j)) & (r["token_type"] == 1)
        assert r["inputs"][on][:-1].tolist() == list(spm.encode(c))


@pytest.mark.parametrize("name, records, match", [
    ("squad_v1", {**RECORDS, "squad/v1.1": [dict(SQUAD[0], answers={"text": ["Broncos"], "answer_start": [3]})]},
     r"^task 'squad_v1' test example 0: answer 'Broncos' is not the context's text at offset 3"),
    ("squad_v1", {**RECORDS, "squad/v1.1": [dict(SQUAD[0], question="  ")]},
     r"^task 'squad_v1' test example 0: empty question"),
    ("hellaswag", {**RECORDS, "hellaswag": [dict(HELLASWAG[0], endings=["only one"], label=0)]},
     r"^task 'hellaswag' test example 0: 'choices' must be 2 to 4 non-empty texts"),
])
def test_bad_records_are_one_line(served, name, records, match):
  with served(records), pytest.raises(ValueError, match=match) as e:
    _rows(name)
  assert "\n" not in str(e.value)


def test_unprepared_data_is_an_error_not_a_download(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  import tensorflow_datasets as tfds_
  monkeypatch.setattr(tfds_.core.constants, "DATA_DIR", str(tmp_path), raising=False)
  with pytest.raises(RuntimeError, match=r"not prepared.*tfds build piqa"):
    tqc.read_split(f"piqa:{tqc.PIQA_VERSION}", "train")
  assert not any(tmp_path.iterdir())
