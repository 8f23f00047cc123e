"""A task's examples read from local CSV / TSV / JSONL / CoNLL files, checked line by line.

Why here and not in a task module: researchers bring their own data as files, and a bad
row must stop a run before anything is written, with one line naming the file, the line
and the fix (not a NaN loss or a KeyError many steps later). `FileTaskSpec.read()` returns
the examples of every split in the form `tasks.registration.add_task` takes
('text' + 'label' / 'score', or 'tokens' + 'tags' with tag ids); `tasks/from_files.py`
declares such tasks in gin and registers them.

Formats (from the extension unless `format` is given):
  .csv  header row, comma separated (RFC 4180 quoting)
  .tsv  header row, tab separated, no quoting
  .jsonl / .json  one JSON object per line
  .conll / .bio / .iob / .txt  (tagging) one token per line, columns split on tabs (else
        whitespace), token in `token_column`, tag in `tag_column`; a blank line ends a
        sentence; '-DOCSTART-' lines are skipped
Tagging rows in CSV / TSV / JSONL hold one sentence: `tokens_field` and `tags_field`,
each a JSON list or a whitespace-separated string, one tag per token.
Sentence pairs: two `text_fields`; each example carries both texts ('texts') and the task
builds the input by `pair_format` (mtl_jax/input/pairs.py): 'native' (default) as the
checkpoint's tokenizer pairs them (`[CLS] a [SEP] b [SEP]`, token types 0 / 1), or 'join'
('f1: <text1> f2: <text2>', T5 style); both cut the longer text first. 'text' keeps the
joined form (the hash split, messages).

Multiple choice: the context from `text_fields`, the choices from `choices_field` (a JSON list;
in CSV / TSV a cell holding one, or the texts separated by ' | '), 2 or more per row; the label
is the right choice's 0-based index or its text. Label names are choice slots ('choice1' ...,
as many as the most choices of any row).

Extractive QA (kind 'span_qa'): `question_field`, `context_field` and `answers_field` (a JSON
list of {"text", "answer_start"} with character offsets into the context, SQuAD style; also
{"text": [...], "answer_start": [...]}; [] = no answer); each answer must be the context's text
at its offset. Missing splits hash the context, so a context's questions share a split.

Labels: `label_names` if given (every label must be one of them); else the distinct labels
of the train file, sorted (numerically if they are all integers), and a validation or
test label outside them is an error. Regression labels must be finite numbers.
Missing splits: with no validation (or test) file, those examples come from the train
file by the fixed hash rule of mtl_jax/data/splits.py (80/10/10 on the normalised text;
pairs hash their joined text, tagging the words joined by spaces); the train split keeps
the rest. Given files are used whole.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import pathlib
import sys
from typing import Any, Mapping, Sequence

from mtl_jax.data import splits as split_rule

KINDS = ("classification", "regression", "tagging", "multiple_choice", "span_qa")
FORMATS = ("csv", "tsv", "jsonl", "conll")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".conll": "conll",
               ".bio": "conll", ".iob": "conll", ".txt": "conll"}


_LINES = "__line_numbers__"  # a CoNLL sentence's per-token line numbers (for errors)


class FileTaskError(ValueError):
  """One bad file, line or setting: the message names it and the fix."""


def _where(path, line: int | None = None) -> str:
  return f"{path}:{line}" if line is not None else str(path)


@dataclasses.dataclass(frozen=True)
class FileTaskSpec:
  """One task from files. Paths may be absolute or relative (to `base_dirs`, in order)."""

  name: str
  kind: str
  train: str
  validation: str | None = None
  test: str | None = None
  format: str | None = None
  text_fields: Sequence[str] | str = ("text",)
  label_field: str = "label"
  label_names: Sequence[str] | None = None
  tokens_field: str = "tokens"
  tags_field: str = "tags"
  token_column: int = 0
  tag_column: int = -1
  base_dirs: Sequence[str] = ()
  pair_format: str = "native"
  choices_field: str = "choices"
  question_field: str = "question"
  context_field: str = "context"
  answers_field: str = "answers"

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name or not self.name.replace("_", "").isalnum():
      raise FileTaskError(f"file task name {self.name!r} must be a non-empty identifier (letters, digits, _)")
    if self.kind not in KINDS:
      raise FileTaskError(f"file task {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
    fields = (self.text_fields,) if isinstance(self.text_fields, str) else tuple(self.text_fields)
    if not 1 <= len(fields) <= 2 or not all(isinstance(f, str) and f for f in fields):
      raise FileTaskError(f"file task {self.name!r}: text_fields must be one field name or two (a sentence "
                          f"pair), got {self.text_fields!r}")
    object.__setattr__(self, "text_fields", fields)
    if self.pair_format not in ("native", "join"):
      raise FileTaskError(f"file task {self.name!r}: pair_format {self.pair_format!r} is not one of native, join")
    if self.format is not None and self.format not in FORMATS:
      raise FileTaskError(f"file task {self.name!r}: format {self.format!r} is not one of {', '.join(FORMATS)}")
    if self.label_names is not None:
      names = tuple(str(n) for n in self.label_names)
      if self.kind == "regression":
        raise FileTaskError(f"file task {self.name!r}: a regression task takes no label_names")
      if len(names) < 2 or len(set(names)) != len(names):
        raise FileTaskError(f"file task {self.name!r}: label_names must be >= 2 distinct names, got {names!r}")
      object.__setattr__(self, "label_names", names)
    if not isinstance(self.train, (str, os.PathLike)) or not str(self.train):
      raise FileTaskError(f"file task {self.name!r} needs a train file; set train = 'path/to/train.csv'")

  # ------------------------------------------------------------------ files
  def path(self, split: str) -> pathlib.Path | None:
    value = getattr(self, split)
    if value is None:
      return None
    path = pathlib.Path(os.path.expanduser(str(value)))
    if not path.is_absolute():
      for base in (*self.base_dirs, os.getcwd()):
        if (pathlib.Path(base) / path).is_file():
          return (pathlib.Path(base) / path).absolute()
    if not path.is_file():
      raise FileTaskError(f"file task {self.name!r}: {split} file {str(value)!r} does not exist (looked in "
                          f"{', '.join(map(str, (*self.base_dirs, os.getcwd())))}); fix the path")
    return path.absolute()

  def file_format(self, path: pathlib.Path) -> str:
    if self.format:
      return self.format
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
      raise FileTaskError(f"{path}: cannot tell the format from the extension {path.suffix!r}; name it "
                          f".csv / .tsv / .jsonl / .conll or set format = one of {', '.join(FORMATS)}")
    if fmt == "conll" and self.kind != "tagging":
      raise FileTaskError(f"{path}: CoNLL files hold tagging data but task {self.name!r} is a {self.kind} "
                          "task; use .csv / .tsv / .jsonl or kind = 'tagging'")
    return fmt

  # ------------------------------------------------------------------ reading
  def read(self) -> tuple[dict[str, list[dict]], tuple[str, ...]]:
    """({split: examples}, label names) for every split; raises FileTaskError on the first problem."""
    rows = {}
    for split in split_rule.SPLITS:
      path = self.path(split)
      if path is not None:
        rows[split] = (path, self._rows(path))
    if self.kind == "span_qa":
      labels = ("start", "end")
    elif self.kind == "multiple_choice":
      most = max(len(self._choices(r, path, line)) for path, records in rows.values() for line, r in records)
      labels = self.label_names or tuple(f"choice{i + 1}" for i in range(most))
    else:
      labels = self.label_names or self._infer_labels(rows["train"][1])
    examples = {split: [self._example(r, labels, path) for r in records] for split, (path, records) in rows.items()}
    return self._fill_missing(examples), tuple(labels)

  def _rows(self, path: pathlib.Path) -> list[tuple[int, dict]]:
    """[(line number, raw record)]: text fields as str, label / tokens / tags raw."""
    lines = _decoded_lines(path)
    fmt = self.file_format(path)
    if fmt == "conll":
      records = self._conll(path, lines)
    elif fmt == "jsonl":
      records = self._jsonl(path, lines)
    else:
      records = self._delimited(path, lines, fmt)
    if not records:
      raise FileTaskError(f"{path}: no examples; task {self.name!r} needs at least one per split file")
    return records

  def _needed(self) -> tuple[str, ...]:
    if self.kind == "tagging":
      return (self.tokens_field, self.tags_field)
    if self.kind == "multiple_choice":
      return (*self.text_fields, self.choices_field, self.label_field)
    if self.kind == "span_qa":
      return (self.question_field, self.context_field, self.answers_field)
    return (*self.text_fields, self.label_field)

  def _delimited(self, path, lines, fmt) -> list[tuple[int, dict]]:
    text = "".join(lines)
    reader = (csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv"
              else csv.reader(io.StringIO(text, newline="")))
    try:
      header = next(reader)
    except StopIteration:
      raise FileTaskError(f"{path}: empty file; it needs a header row with {', '.join(self._needed())}") from None
    except csv.Error as e:
      raise FileTaskError(f"{_where(path, 1)}: unreadable {fmt.upper()} header ({e})") from None
    header = [h.strip() for h in header]
    missing = [f for f in self._needed() if f not in header]
    if missing:
      raise FileTaskError(f"{_where(path, 1)}: no column {missing[0]!r} (columns: {', '.join(header)}); "
                          f"rename the column or set the task's {self._field_setting(missing[0])}")
    records = []
    while True:
      try:
        row = next(reader)
      except StopIteration:
        break
      except csv.Error as e:
        raise FileTaskError(f"{_where(path, reader.line_num)}: unreadable {fmt.upper()} row ({e})") from None
      line = reader.line_num
      if not row or all(not c.strip() for c in row):
        continue  # blank line
      if len(row) != len(header):
        raise FileTaskError(f"{_where(path, line)}: {len(row)} fields but the header has {len(header)}; "
                            f"quote fields holding the separator" + (" (TSV: no tabs inside a field)"
                                                                     if fmt == "tsv" else ""))
      records.append((line, dict(zip(header, row))))
    return records

  def _jsonl(self, path, lines) -> list[tuple[int, dict]]:
    records = []
    for number, line in enumerate(lines, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line.rstrip("\r\n"))
      except json.JSONDecodeError as e:
        raise FileTaskError(f"{_where(path, number)}: not valid JSON ({e.msg} at column {e.colno}); "
                            "write one JSON object per line") from None
      if not isinstance(record, dict):
        raise FileTaskError(f"{_where(path, number)}: a JSON {type(record).__name__}, not an object; write one "
                            "JSON object per line")
      missing = [f for f in self._needed() if f not in record]
      if missing:
        raise FileTaskError(f"{_where(path, number)}: no field {missing[0]!r} (fields: {', '.join(record)}); "
                            f"add it or set the task's {self._field_setting(missing[0])}")
      records.append((number, record))
    return records

  def _conll(self, path, lines) -> list[tuple[int, dict]]:
    records, tokens, tags, numbers = [], [], [], []
    for number, line in enumerate([*lines, ""], 1):
      stripped = line.strip()
      if stripped.startswith("-DOCSTART-"):
        continue
      if not stripped:
        if tokens:
          records.append((numbers[0], {self.tokens_field: tokens, self.tags_field: tags, _LINES: numbers}))
        tokens, tags, numbers = [], [], []
        continue
      columns = line.rstrip("\r\n").split("\t") if "\t" in line else stripped.split()
      try:
        token, tag = columns[self.token_column].strip(), columns[self.tag_column].strip()
      except IndexError:
        raise FileTaskError(f"{_where(path, number)}: {len(columns)} column(s), no token column "
                            f"{self.token_column} / tag column {self.tag_column}; write 'token<TAB>tag' or set "
                            "token_column / tag_column") from None
      if not token or not tag:
        raise FileTaskError(f"{_where(path, number)}: empty token or tag; write 'token<TAB>tag'")
      numbers.append(number)
      tokens.append(token)
      tags.append(tag)
    return records

  def _field_setting(self, field: str) -> str:
    if field in self.text_fields:
      return "text_fields"
    return {self.label_field: "label_field", self.tokens_field: "tokens_field", self.choices_field: "choices_field",
            self.question_field: "question_field", self.context_field: "context_field",
            self.answers_field: "answers_field",
            self.tags_field: "tags_field"}.get(field, "fields")

  # ------------------------------------------------------------------ labels and examples
  def _infer_labels(self, records) -> tuple[str, ...]:
    if self.kind == "regression":
      return ()
    path = self.path("train")
    seen = set()
    for line, record in records:
      values = self._tags(record, path, line)[1] if self.kind == "tagging" else [record[self.label_field]]
      for value in values:
        seen.add(_label_text(value, path, line))
    seen.discard("")
    labels = sorted(seen, key=lambda s: (0, int(s), s) if _is_int(s) and all(map(_is_int, seen)) else (1, 0, s))
    what = "tag" if self.kind == "tagging" else "label"
    if len(labels) < 2:
      raise FileTaskError(f"{path}: task {self.name!r} has {len(labels)} distinct {what}(s) in train "
                          f"({', '.join(labels) or 'none'}); a {self.kind} task needs >= 2, or set label_names")
    print(f"mtl_jax: file task {self.name!r}: {len(labels)} {what}s inferred from {path.name} (sorted): "
          + ", ".join(labels), file=sys.stderr, flush=True)
    return tuple(labels)

  def _choices(self, record, path, line) -> list[str]:
    value = record.get(self.choices_field)
    if isinstance(value, str) and not value.strip().startswith("["):
      choices = value.split(" | ")
    else:
      choices = _as_list(value) if value is not None else []
    if len(choices) < 2 or any(not isinstance(c, str) or not c.strip() for c in choices):
      raise FileTaskError(f"{_where(path or 'input', line)}: {self.choices_field!r} must hold >= 2 non-empty choices, "
                          f"got {value!r}; give a JSON list (or 'a | b' in CSV / TSV)")
    return [" ".join(c.split()) for c in choices]

  def _qa_example(self, record, path, line, with_answers: bool = True) -> dict:
    from mtl_jax.heads import span_qa
    where = _where(path or "input", line)
    question, context = record.get(self.question_field), record.get(self.context_field)
    if not isinstance(question, str) or not question.strip():
      raise FileTaskError(f"{where}: empty question in {self.question_field!r}; drop the row or fill it")
    if not isinstance(context, str) or not context.strip():
      raise FileTaskError(f"{where}: empty context in {self.context_field!r}; drop the row or fill it")
    example = {"text": " ".join(question.split()), "context": context, "answers": []}
    if not with_answers:
      return example
    value = record.get(self.answers_field)
    if isinstance(value, str):
      try:
        value = json.loads(value)
      except json.JSONDecodeError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("text"), list):  # SQuAD's columns form
      value = [{"text": t, "answer_start": s} for t, s in zip(value["text"], value.get("answer_start", []))]
    if not isinstance(value, list) or not all(isinstance(a, dict) and isinstance(a.get("text"), str) for a in value):
      raise FileTaskError(f"{where}: {self.answers_field!r} must be a JSON list of {{\"text\", \"answer_start\"}} "
                          f"([] = no answer), got {value!r}")
    for a in value:
      try:
        span_qa.check_answer(context, a["text"], a.get("answer_start"), where)
      except ValueError as e:
        raise FileTaskError(str(e)) from None
    example["answers"] = [{"text": a["text"], "answer_start": a["answer_start"]} for a in value]
    return example

  def _choice_example(self, record, path, line) -> dict:
    context = self.text(record, path, line)
    return {"text": context, "choices": self._choices(record, path, line)}

  def _tags(self, record, path, line) -> tuple[list[str], list]:
    tokens, tags = (_as_list(record[self.tokens_field]), _as_list(record[self.tags_field]))
    if not tokens:
      raise FileTaskError(f"{_where(path, line)}: empty {self.tokens_field!r}; every sentence needs tokens")
    if len(tokens) != len(tags):
      raise FileTaskError(f"{_where(path, line)}: {len(tokens)} tokens but {len(tags)} tags; give one tag per "
                          "token")
    if any(not isinstance(t, str) or not t.strip() for t in tokens):
      raise FileTaskError(f"{_where(path, line)}: an empty or non-text token in {self.tokens_field!r}")
    return [t.strip() for t in tokens], tags

  def text(self, record: Mapping[str, Any], path=None, line=None) -> str:
    """One text for a record of this task's fields (a pair joined T5-style: the hash split's key)."""
    parts = self.texts(record, path, line)
    if len(parts) == 1:
      return parts[0]
    return " ".join(f"{f}: {p}" for f, p in zip(self.text_fields, parts))

  def texts(self, record: Mapping[str, Any], path=None, line=None) -> list[str]:
    """The record's text of each text field, whitespace collapsed; an absent or empty one is an error."""
    parts = []
    for field in self.text_fields:
      if field not in record:
        raise FileTaskError(f"{_where(path or 'input', line)}: no field {field!r} (task {self.name!r} reads "
                            f"{', '.join(self.text_fields)})")
      value = record[field]
      if not isinstance(value, str) or not value.strip():
        raise FileTaskError(f"{_where(path or 'input', line)}: empty text in {field!r}; drop the row or fill it")
      parts.append(" ".join(value.split()))
    return parts

  def _text_example(self, record, path, line) -> dict:
    """{'text'} or, for a pair, {'text' (joined), 'texts' (each field's)}: what add_task reads."""
    parts = self.texts(record, path, line)
    if len(parts) == 1:
      return {"text": parts[0]}
    return {"text": " ".join(f"{f}: {p}" for f, p in zip(self.text_fields, parts)), "texts": parts}

  def input_example(self, record: Mapping[str, Any], path=None, line=None) -> dict:
    """The unlabelled example for `record` (what prediction feeds the task)."""
    if self.kind == "tagging":
      tokens = _as_list(record.get(self.tokens_field, ()))
      if not tokens or any(not isinstance(t, str) or not t.strip() for t in tokens):
        raise FileTaskError(f"{_where(path or 'input', line)}: empty {self.tokens_field!r} for task {self.name!r}")
      return {"tokens": [t.strip() for t in tokens], "tags": [0] * len(tokens)}
    if self.kind == "multiple_choice":
      return self._choice_example(record, path, line)
    if self.kind == "span_qa":
      return self._qa_example(record, path, line, with_answers=False)
    return self._text_example(record, path, line)

  def _example(self, item, labels, path) -> dict:
    line, record = item
    if self.kind == "tagging":
      tokens, tags = self._tags(record, path, line)
      lines = record.get(_LINES, [line] * len(tags))  # CoNLL: each token's own line
      return {"tokens": tokens, "tags": [_index(t, labels, path, n, "tag", self.name) for t, n in zip(tags, lines)],
              "text": " ".join(tokens)}
    if self.kind == "span_qa":
      return self._qa_example(record, path, line)
    value = record[self.label_field]
    if self.kind == "multiple_choice":
      example = self._choice_example(record, path, line)
      text = str(value).strip() if not isinstance(value, bool) else ""
      if text in example["choices"]:
        example["label"] = example["choices"].index(text)
      elif _is_int(text) and 0 <= int(text) < len(example["choices"]):
        example["label"] = int(text)
      else:
        raise FileTaskError(f"{_where(path, line)}: label {value!r} is neither a choice's 0-based index (0 to "
                            f"{len(example['choices']) - 1}) nor one of its choices' text; fix the row")
      return example
    example = self._text_example(record, path, line)
    if self.kind == "regression":
      try:
        score = float(value)
      except (TypeError, ValueError):
        score = math.nan
      if isinstance(value, bool) or not math.isfinite(score):
        raise FileTaskError(f"{_where(path, line)}: regression label {value!r} in {self.label_field!r} is not a "
                            "finite number; fix or drop the row")
      example["score"] = score
    else:
      example["label"] = _index(value, labels, path, line, "label", self.name)
    return example

  def _fill_missing(self, examples: dict[str, list]) -> dict[str, list]:
    missing = [s for s in ("validation", "test") if s not in examples]
    if missing:
      pool, examples["train"] = examples["train"], []
      for split in missing:
        examples[split] = []
      for ex in pool:
        split = split_rule.split_of(ex.get("context") or ex["text"])
        examples[split if split in missing else "train"].append(ex)
    for split, exs in examples.items():
      if not exs:
        raise FileTaskError(f"{self.path('train')}: task {self.name!r} has no {split} examples after the hash "
                            f"split ({len(examples['train'])} train); give a {split} file or more data")
    return examples


def _decoded_lines(path: pathlib.Path) -> list[str]:
  """The file's lines (with endings) as UTF-8; bad bytes name their line."""
  try:
    data = path.read_bytes()
  except OSError as e:
    raise FileTaskError(f"{path}: cannot be read ({e.strerror}); check the path and permissions") from None
  if data.startswith(b"\xef\xbb\xbf"):
    data = data[3:]  # a UTF-8 byte order mark (Excel's CSV export)
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise FileTaskError(f"{_where(path, line)}: not UTF-8 (byte {data[e.start]:#04x}); save the file as UTF-8, "
                        "e.g. iconv -f latin1 -t utf-8") from None
  return text.splitlines(keepends=True)


def _as_list(value) -> list:
  if isinstance(value, str):
    stripped = value.strip()
    if stripped.startswith("["):
      try:
        parsed = json.loads(stripped)
        if isinstance(parsed, list):
          return parsed
      except json.JSONDecodeError:
        pass
    return stripped.split()
  return list(value) if isinstance(value, (list, tuple)) else [value]


def _is_int(text: str) -> bool:
  return text.lstrip("-").isdigit()


def _label_text(value, path, line) -> str:
  if isinstance(value, bool) or not isinstance(value, (str, int)):
    raise FileTaskError(f"{_where(path, line)}: label {value!r} must be a string or an integer")
  return str(value).strip()


def _index(value, labels, path, line, what, task) -> int:
  text = _label_text(value, path, line)
  if not text:
    raise FileTaskError(f"{_where(path, line)}: empty {what}; every example needs one")
  if text not in labels:
    raise FileTaskError(f"{_where(path, line)}: {what} {text!r} is not in task {task!r}'s label set "
                        f"({', '.join(labels)}); fix the row or list it in label_names")
  return labels.index(text)
