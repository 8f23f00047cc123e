"""Every bad-file case through the binary's main(): exit 2, ONE stderr line naming the file, the line
and the problem, and MODEL_DIR never created."""

import json

import pytest

from mtl_jax import train
from conftest import ONE_DEVICE

HEADER = "text,label\n"
GOOD = "a fine day,pos\na grim day,neg\n"


def _jsonl(*records):
  return "".join(json.dumps(r) + "\n" for r in records)


# (file name, content (str or bytes), extra gin bindings, expected message after 'PATH:')
CASES = {
    "missing_column": ("t.csv", "text,stars\na fine day,5\n", {},
                       "1: no column 'label' (columns: text, stars); rename the column or set the task's label_field"),
    "missing_jsonl_field": ("t.jsonl", _jsonl({"text": "a", "label": "pos"}, {"text": "b", "label": "neg"},
                                              {"text": "c"}), {},
                            "3: no field 'label' (fields: text); add it or set the task's label_field"),
    "label_not_in_label_names": ("t.csv", HEADER + GOOD + "so so,meh\n", {"label_names": ["neg", "pos"]},
                                 "4: label 'meh' is not in task 'bad_task''s label set (neg, pos); fix the row or "
                                 "list it in label_names"),
    "empty_text": ("t.csv", HEADER + GOOD + " ,pos\n", {},
                   "4: empty text in 'text'; drop the row or fill it"),
    "empty_label": ("t.csv", HEADER + GOOD + "a day,\n", {}, "4: empty label; every example needs one"),
    "bad_encoding": ("t.csv", (HEADER + GOOD).encode() + "caf\u00e9 noir,pos\n".encode("latin-1"), {},
                     "4: not UTF-8 (byte 0xe9); save the file as UTF-8, e.g. iconv -f latin1 -t utf-8"),
    "bad_json": ("t.jsonl", _jsonl({"text": "a", "label": "pos"}) + '{"text": "b", "label": \n', {},
                 "2: not valid JSON (Expecting value at column 24); write one JSON object per line"),
    "json_not_an_object": ("t.jsonl", _jsonl({"text": "a", "label": "pos"}, ["b", "neg"]), {},
                           "2: a JSON list, not an object; write one JSON object per line"),
    "wrong_field_count": ("t.csv", HEADER + GOOD + "a,b,c\n", {},
                          "4: 3 fields but the header has 2; quote fields holding the separator"),
    "score_not_a_number": ("t.tsv", "text\tlabel\ngood\t0.5\nbad\tlow\n", {"kind": "regression"},
                           "3: regression label 'low' in 'label' is not a finite number; fix or drop the row"),
    "tags_do_not_match_tokens": ("t.jsonl", _jsonl({"tokens": ["a", "b"], "tags": ["O", "B"]},
                                                   {"tokens": ["c", "d"], "tags": ["O"]}), {"kind": "tagging"},
                                 "2: 2 tokens but 1 tags; give one tag per token"),
    "conll_without_tag_column": ("t.conll", "Ana\tB\nmet\tO\n\nTom\n", {"kind": "tagging", "tag_column": 1},
                                 "4: 1 column(s), no token column 0 / tag column 1; write 'token<TAB>tag' or set "
                                 "token_column / tag_column"),
    "conll_tag_not_in_label_names": ("t.conll", "-DOCSTART-\tO\n\nAna\tB-PER\nmet\tO\n\nTom\tB-PRS\n",
                                     {"kind": "tagging", "label_names": ["B-PER", "O"]},
                                     "6: tag 'B-PRS' is not in task 'bad_task''s label set (B-PER, O); fix the row or "
                                     "list it in label_names"),
    "one_label_only": ("t.csv", HEADER + "a,pos\nb,pos\n", {},
                       ": task 'bad_task' has 1 distinct label(s) in train (pos); a classification task needs >= 2, "
                       "or set label_names"),
    "no_examples": ("t.csv", HEADER, {}, ": no examples; task 'bad_task' needs at least one per split file"),
    "unknown_extension": ("t.xlsx", HEADER + GOOD, {},
                          ": cannot tell the format from the extension '.xlsx'; name it .csv / .tsv / .jsonl / .conll "
                          "or set format = one of csv, tsv, jsonl, conll"),
}


def _run(tmp_path, capsys, train_file, bindings):
  lines = ["import tasks.from_files", "bad/from_files.task.name = 'bad_task'",
           "bad/from_files.task.kind = 'classification'", f"bad/from_files.task.train = {str(train_file)!r}",
           "MIXTURE_OR_TASK_NAME = @bad/from_files.task()"]
  lines += [f"bad/from_files.task.{k} = {v!r}" for k, v in bindings.items()]
  gin_file = tmp_path / "bad.gin"
  gin_file.write_text("\n".join(lines) + "\n")
  model_dir = tmp_path / "never"
  capsys.readouterr()
  rc = train.main(["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
                   f"--gin_file={gin_file}", "--gin.TRAIN_STEPS=2", f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE])
  err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("mtl-train")]
  return rc, err, model_dir


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_is_one_line_naming_file_and_line_and_nothing_is_written(tmp_path, capsys, case):
  name, content, bindings, expected = CASES[case]
  path = tmp_path / name
  (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
  rc, err, model_dir = _run(tmp_path, capsys, path, bindings)
  assert rc == 2
  sep = ":" if expected[0].isdigit() else ""
  assert err == [f"mtl-train: error: {path}{sep}{expected}"]
  assert not model_dir.exists()


def test_missing_file_and_a_validation_label_unseen_in_train(tmp_path, capsys):
  rc, err, model_dir = _run(tmp_path, capsys, tmp_path / "nope.csv", {})
  assert rc == 2 and not model_dir.exists()
  assert err[0].startswith(f"mtl-train: error: file task 'bad_task': train file '{tmp_path / 'nope.csv'}' does "
                           "not exist (looked in ") and err[0].endswith("); fix the path") and len(err) == 1

  (tmp_path / "t.csv").write_text(HEADER + GOOD)
  (tmp_path / "v.csv").write_text(HEADER + "fine,pos\nmeh,neutral\n")
  rc, err, model_dir = _run(tmp_path, capsys, tmp_path / "t.csv", {"validation": str(tmp_path / "v.csv")})
  assert rc == 2 and not model_dir.exists()
  assert err == [f"mtl-train: error: {tmp_path / 'v.csv'}:3: label 'neutral' is not in task 'bad_task''s label set "
                 "(neg, pos); fix the row or list it in label_names"]


def test_a_file_task_may_not_replace_a_registered_task(tmp_path, capsys):
  (tmp_path / "t.csv").write_text(HEADER + GOOD)
  rc, err, model_dir = _run(tmp_path, capsys, tmp_path / "t.csv", {"name": "rotten_tomatoes"})
  assert rc == 2 and not model_dir.exists()
  assert err == ["mtl-train: error: file task name 'rotten_tomatoes' is already a registered task (not from files); "
                 "choose another from_files.task.name"]
