"""Tasks (and mixtures) from your own CSV / TSV / JSONL / CoNLL files, declared in gin.

    import tasks.from_files

    reviews/from_files.task.name = 'my_reviews'
    reviews/from_files.task.kind = 'classification'          # | 'regression' | 'tagging' | 'multiple_choice'
    #                                                        # | 'span_qa' (question / context / answers fields)
    reviews/from_files.task.train = 'data/reviews_train.csv'
    reviews/from_files.task.validation = 'data/reviews_dev.csv'   # optional: else the hash split
    reviews/from_files.task.text_fields = 'text'             # or ['premise', 'hypothesis']
    # reviews/from_files.task.pair_format = 'join'           # a pair as 'premise: .. hypothesis: ..'
    #                                                        # (default 'native': [CLS] a [SEP] b [SEP])
    reviews/from_files.task.label_field = 'label'
    # reviews/from_files.task.label_names = ['neg', 'pos']   # optional: else sorted train labels

    MIXTURE_OR_TASK_NAME = @from_files.mixture()
    from_files.mixture.name = 'my_mix'
    from_files.mixture.tasks = [@reviews/from_files.task(), ('rotten_tomatoes', 2.0)]

Why gin call references: `@reviews/from_files.task()` runs when the trainer's arguments are
resolved, i.e. before train() checks or writes anything, so the files are read and checked
first (a bad row is one error line naming file and line; MODEL_DIR is untouched), and the same
gin (MODEL_DIR/config.gin) re-registers the tasks in any later process: a resume, mtl-predict.
A file task is an ordinary seqio Task (tasks.registration.add_task) with its kind's default
metrics and the offline tasks' vocabulary (tasks.offline.VOCABULARY: the run's SentencePiece
model, or `pretrained.checkpoint`'s tokenizer), so it mixes with every other task.
`from_files.task(...)` returns the task name, so a single file task can be the whole run:
`MIXTURE_OR_TASK_NAME = @reviews/from_files.task()`. File formats, label inference and the
hash split of missing splits: mtl_jax/data/file_tasks.py. Relative paths are looked up
from the current directory, then the repository root.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Sequence

import gin
import seqio

from mtl_jax.data import file_tasks
from tasks import offline, registration


SPECS: dict[str, file_tasks.FileTaskSpec] = {}  # the file tasks registered in this process, by name


def _repo_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@gin.configurable(module="from_files")
def task(name: str = gin.REQUIRED, kind: str = gin.REQUIRED, train: str = gin.REQUIRED,
         validation: str | None = None, test: str | None = None, format: str | None = None,  # noqa: A002
         text_fields: Sequence[str] | str = ("text",), label_field: str = "label",
         label_names: Sequence[str] | None = None, tokens_field: str = "tokens", tags_field: str = "tags",
         token_column: int = 0, tag_column: int = -1, pair_format: str = "native",
         choices_field: str = "choices", question_field: str = "question", context_field: str = "context",
         answers_field: str = "answers") -> str:
  """Reads and checks the files, registers the seqio Task `name`, returns `name`."""
  spec = file_tasks.FileTaskSpec(
      name=name, kind=kind, train=train, validation=validation, test=test, format=format,
      text_fields=text_fields, label_field=label_field, label_names=label_names, tokens_field=tokens_field,
      tags_field=tags_field, token_column=token_column, tag_column=tag_column,
      base_dirs=(os.getcwd(), _repo_root()), pair_format=pair_format, choices_field=choices_field,
      question_field=question_field, context_field=context_field, answers_field=answers_field)
  if name in seqio.TaskRegistry.names() and name not in SPECS:
    raise file_tasks.FileTaskError(f"file task name {name!r} is already a registered task (not from files); "
                                   "choose another from_files.task.name")
  examples, labels = spec.read()
  registration.add_task(name, kind=kind, vocabulary=offline.VOCABULARY, label_names=labels,
                        examples_fn=lambda split: examples.get(split, []),
                        num_examples={s: len(e) for s, e in examples.items()},
                        text_fields=(spec.text_fields if len(spec.text_fields) > 1
                                     and kind in ("classification", "regression") else ()),
                        pair_format=spec.pair_format)
  SPECS[name] = spec
  return name


@gin.configurable(module="from_files")
def mixture(name: str = gin.REQUIRED, tasks: Sequence = gin.REQUIRED) -> str:
  """Registers the seqio Mixture `name` of `tasks` (names or (name, rate); rate 1.0 if not given), returns `name`.

  Entries may be file tasks (`@scope/from_files.task()`) or any registered task ('rotten_tomatoes').
  `mixing.rates.strategy` (gin/mixing/*.gin) overrides the rates as for any mixture.
  """
  if isinstance(tasks, (str, bytes)) or not tasks:
    raise ValueError(f"from_files.mixture.tasks must be a non-empty list of task names or (name, rate), got {tasks!r}")
  entries = []
  known = set(seqio.TaskRegistry.names())
  for entry in tasks:
    task_name, rate = (entry, 1.0) if isinstance(entry, str) else tuple(entry)
    if task_name not in known:
      raise ValueError(f"from_files.mixture {name!r}: unknown task {task_name!r}; declare it with "
                       "@scope/from_files.task() or import the module that registers it")
    entries.append((task_name, rate))
  if name in seqio.TaskRegistry.names():
    raise ValueError(f"from_files.mixture.name {name!r} is a task name; choose another mixture name")
  registration.add_mixture(name, entries)
  return name


_TASK_KEYS = ("name", "kind", "train", "validation", "test", "format", "text_fields", "label_field", "label_names",
              "tokens_field", "tags_field", "token_column", "tag_column", "pair_format", "choices_field", "question_field",
              "context_field", "answers_field")


@gin.configurable(module="from_files")
def from_spec(path: str = gin.REQUIRED) -> str:
  """Registers the tasks of a small JSON / YAML spec file and returns the run's task or mixture name.

      tasks:                                  # each entry: from_files.task's arguments
        - {name: my_reviews, kind: classification, train: reviews_train.csv}
        - {name: my_ratings, kind: regression, train: ratings.tsv, label_field: score}
      mixture: {name: my_mix, tasks: [my_reviews, my_ratings, [rotten_tomatoes, 2.0]]}   # optional

  Relative file paths are looked up next to the spec first. Without 'mixture' the spec must hold
  one task, whose name is returned. In gin: `MIXTURE_OR_TASK_NAME = @from_files.from_spec()`.
  """
  spec_path = pathlib.Path(os.path.expanduser(str(path)))
  if not spec_path.is_absolute() and not spec_path.is_file():
    spec_path = pathlib.Path(_repo_root()) / spec_path
  if not spec_path.is_file():
    raise file_tasks.FileTaskError(f"from_files.from_spec.path {str(path)!r} does not exist; fix the path")
  text = spec_path.read_text(encoding="utf-8")
  try:
    if spec_path.suffix.lower() == ".json":
      spec = json.loads(text)
    else:
      import yaml
      spec = yaml.safe_load(text)
  except Exception as e:  # json.JSONDecodeError, yaml.YAMLError
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise file_tasks.FileTaskError(f"{spec_path}: unreadable spec ({first})") from None
  if not isinstance(spec, dict) or not isinstance(spec.get("tasks"), list) or not spec["tasks"]:
    raise file_tasks.FileTaskError(f"{spec_path}: a spec is a mapping with a non-empty 'tasks' list "
                                   "(and optionally 'mixture': {name, tasks})")
  unknown = sorted(set(spec) - {"tasks", "mixture"})
  if unknown:
    raise file_tasks.FileTaskError(f"{spec_path}: unknown key {unknown[0]!r}; a spec holds 'tasks' and 'mixture'")
  names = []
  for number, entry in enumerate(spec["tasks"], 1):
    if not isinstance(entry, dict):
      raise file_tasks.FileTaskError(f"{spec_path}: task {number} is not a mapping of from_files.task arguments")
    bad = sorted(set(entry) - set(_TASK_KEYS))
    if bad:
      raise file_tasks.FileTaskError(f"{spec_path}: task {number} has unknown key {bad[0]!r}; use {', '.join(_TASK_KEYS)}")
    missing = [k for k in ("name", "kind", "train") if k not in entry]
    if missing:
      raise file_tasks.FileTaskError(f"{spec_path}: task {number} has no {missing[0]!r}")
    entry = dict(entry)
    for split in ("train", "validation", "test"):
      if entry.get(split) and (spec_path.parent / str(entry[split])).is_file():
        entry[split] = str((spec_path.parent / str(entry[split])).absolute())
    names.append(task(**entry))
  mix = spec.get("mixture")
  if mix is None:
    if len(names) != 1:
      raise file_tasks.FileTaskError(f"{spec_path}: {len(names)} tasks but no 'mixture'; add mixture: "
                                     "{name: ..., tasks: [...]}")
    return names[0]
  if not isinstance(mix, dict) or set(mix) != {"name", "tasks"}:
    raise file_tasks.FileTaskError(f"{spec_path}: 'mixture' must be {{name: ..., tasks: [...]}}, got {mix!r}")
  return mixture(name=mix["name"], tasks=[e if isinstance(e, str) else tuple(e) for e in mix["tasks"]])


def input_example(task_name: str, record) -> dict:
  """An unlabelled example of a file task from a record of its fields (prediction)."""
  return SPECS[task_name].input_example(record)
