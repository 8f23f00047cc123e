"""Input records (a text, or a dict of a task's fields) -> each task's unlabelled example.

Why one place: a prediction must see its input exactly as training saw that task's data. A
file task (tasks/from_files.py) builds the example with the very code that read its files
(its text_fields; a pair from JSON fields or one TSV line `a<TAB>b`); a Python-registered task reads 'text' (or
'tokens' for tagging, else the text split on whitespace). Labels are placeholders (0); the
task's own tokenization then runs in mtl_jax/predict/load.py.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any, Mapping

from mtl_jax.input import task_info


_PLACEHOLDER = {"classification": {"label": 0}, "regression": {"score": 0.0}, "tagging": {},
                "multiple_choice": {"label": 0}, "span_qa": {"answers": []}}


def example_for(task: str, record: str | Mapping[str, Any], line: int, source: str = "input",
                specs: Mapping | None = None) -> dict:
  """The example of `task` for one input (a plain text or a JSON object), `source`:`line` in errors.
  `specs`: the file tasks' specs by name (default: those registered in this process, tasks.from_files)."""
  return {**_example(task, record, line, source, specs), **_PLACEHOLDER[task_info.get(task).kind]}


def examples_for(task: str, records, source: str = "input", run_tasks=(), specs: Mapping | None = None) -> list[dict]:
  """Every record's example of `task`; a record that does not fit the task is one error naming the
  input file and line, and how to leave the task out (--tasks) when the run has other tasks."""
  try:
    return [example_for(task, r, i + 1, source, specs) for i, r in enumerate(records)]
  except ValueError as e:
    message = str(e)
    others = [t for t in run_tasks if t != task]
    if others and "--tasks" not in message:
      message += (f"; if this input is not for {task!r}, choose its tasks with --tasks "
                  f"(this run's other tasks: {', '.join(others)})")
    raise ValueError(message) from None


def _example(task: str, record, line: int, source: str = "input", specs: Mapping | None = None) -> dict:
  if specs is None:
    from tasks import from_files  # registered file tasks, if the run has any (imports seqio)
    specs = from_files.SPECS
  spec = specs.get(task)
  kind = task_info.get(task).kind
  if kind == "multiple_choice" and spec is None:
    return _choice_example(task, record, line, source)
  if kind == "span_qa" and spec is None:
    return _qa_example(task, record, line, source)
  if isinstance(record, str):
    if not record.strip():
      raise ValueError(f"input line {line} is empty; give one text per line (or a JSON object)")
    if spec is not None:
      if kind == "tagging":
        record = {spec.tokens_field: record}
      elif kind == "span_qa":  # question<TAB>context
        question, _, context = record.partition("\t")
        record = {spec.question_field: question, spec.context_field: context}
      elif kind == "multiple_choice" and len(spec.text_fields) == 1:  # context<TAB>choice<TAB>choice...
        context, *choices = record.split("\t")
        record = {spec.text_fields[0]: context, spec.choices_field: choices}
      elif len(spec.text_fields) == 1:
        record = {spec.text_fields[0]: record}
      elif record.count("\t") == 1:  # a pair as one TSV line: text_a<TAB>text_b
        record = dict(zip(spec.text_fields, record.split("\t")))
      else:
        raise ValueError(f"{source}:{line}: task {task!r} reads a sentence pair ({', '.join(spec.text_fields)}); "
                         "give the two texts separated by one tab, or JSONL with those fields, or leave it "
                         "out with --tasks")
    else:
      record = {"tokens": record.split()} if kind == "tagging" else {"text": record}
  if not isinstance(record, Mapping):
    raise ValueError(f"input line {line}: expected a text or a JSON object, got {type(record).__name__}")
  if spec is not None:
    try:
      return spec.input_example(record, source, line)
    except ValueError as e:
      raise ValueError(str(e)) from None
  if kind == "tagging":
    tokens = record.get("tokens")
    if tokens is None and isinstance(record.get("text"), str):
      tokens = record["text"].split()
    if not tokens or not all(isinstance(t, str) and t.strip() for t in tokens):
      raise ValueError(f"input line {line}: task {task!r} tags words: give 'tokens' (a list) or a non-empty 'text'")
    return {"tokens": [t.strip() for t in tokens], "tags": [0] * len(tokens)}
  text = record.get("text")
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"{source}:{line}: no field 'text' (task {task!r} reads text)")
  return {"text": text}


def _choice_example(task: str, record, line: int, source: str) -> dict:
  """A multiple-choice input: 'context<TAB>choice<TAB>choice...' or {'text', 'choices': [...]}."""
  if isinstance(record, str):
    context, *choices = record.split("\t")
  elif isinstance(record, Mapping):
    context, choices = record.get("text", record.get("context")), record.get("choices")
  else:
    raise ValueError(f"{source}:{line}: expected a text or a JSON object, got {type(record).__name__}")
  if not isinstance(context, str) or not context.strip():
    raise ValueError(f"{source}:{line}: empty context (task {task!r} reads 'text' and 'choices')")
  if not isinstance(choices, (list, tuple)) or len(choices) < 2 or not all(
      isinstance(c, str) and c.strip() for c in choices):
    raise ValueError(f"{source}:{line}: task {task!r} needs >= 2 non-empty choices, got {choices!r}; give "
                     "'context<TAB>choice<TAB>choice...' or JSON {'text': ..., 'choices': [...]}")
  limit = len(task_info.get(task).label_names)
  if len(choices) > limit:
    raise ValueError(f"{source}:{line}: {len(choices)} choices but task {task!r} takes at most {limit}")
  return {"text": context.strip(), "choices": [c.strip() for c in choices]}


def _qa_example(task: str, record, line: int, source: str) -> dict:
  """An extractive-QA input: 'question<TAB>context' or {'question' (or 'text'), 'context'}."""
  if isinstance(record, str):
    question, _, context = record.partition("\t")
  elif isinstance(record, Mapping):
    question, context = record.get("question", record.get("text")), record.get("context")
  else:
    raise ValueError(f"{source}:{line}: expected a text or a JSON object, got {type(record).__name__}")
  if not isinstance(question, str) or not question.strip():
    raise ValueError(f"{source}:{line}: empty question (task {task!r} reads 'question<TAB>context' or JSON "
                     "{'question', 'context'})")
  if not isinstance(context, str) or not context.strip():
    raise ValueError(f"{source}:{line}: empty context (task {task!r} reads 'question<TAB>context' or JSON "
                     "{'question', 'context'})")
  return {"text": question.strip(), "context": context}


def words_of(example: Mapping[str, Any]) -> list[str] | None:
  return list(example["tokens"]) if "tokens" in example else None


def read_records(source: str, input_format: str = "auto") -> list[str | dict]:
  """The lines of FILE (or '-': stdin) as texts, or JSON objects (format 'jsonl', or 'auto' with a
  .jsonl / .json file, or stdin whose every non-blank line is a JSON object)."""
  if source == "-":
    text, name = sys.stdin.read(), "stdin"
  else:
    path = pathlib.Path(source)
    if not path.is_file():
      raise ValueError(f"--input {source!r} does not exist; pass a file with one text (or JSON object) per line, "
                       "or - for stdin")
    try:
      text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
      line = path.read_bytes()[:e.start].count(b"\n") + 1
      raise ValueError(f"{source}:{line}: not UTF-8; save the input as UTF-8") from None
    name = source
  lines = text.splitlines()
  while lines and not lines[-1].strip():
    lines.pop()
  if not lines:
    raise ValueError(f"--input {name} is empty; it needs one text (or JSON object) per line")
  if input_format == "auto":
    if name != "stdin":
      input_format = "jsonl" if name.lower().endswith((".jsonl", ".json")) else "text"
    else:
      input_format = "jsonl" if all(_is_object(l) for l in lines if l.strip()) else "text"
  if input_format == "text":
    return lines
  records = []
  for number, line in enumerate(lines, 1):
    try:
      records.append(json.loads(line) if line.strip() else "")
    except json.JSONDecodeError as e:
      raise ValueError(f"{name}:{number}: not valid JSON ({e.msg}); one JSON object per line, or "
                       "--input_format=text") from None
  return records


def _is_object(line: str) -> bool:
  try:
    return isinstance(json.loads(line), dict)
  except json.JSONDecodeError:
    return False
