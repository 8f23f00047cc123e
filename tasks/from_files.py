"""Tasks (and mixtures) from your own CSV / TSV / JSONL / CoNLL files, declared in gin.

    import tasks.from_files

    reviews/from_files.task.name = 'my_reviews'
    reviews/from_files.task.kind = 'classification'          # | 'regression' | 'tagging'
    reviews/from_files.task.train = 'data/reviews_train.csv'
    reviews/from_files.task.validation = 'data/reviews_dev.csv'   # optional: else the hash split
    reviews/from_files.task.text_fields = 'text'             # or ['premise', 'hypothesis']
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

import os
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
         token_column: int = 0, tag_column: int = -1) -> str:
  """Reads and checks the files, registers the seqio Task `name`, returns `name`."""
  spec = file_tasks.FileTaskSpec(
      name=name, kind=kind, train=train, validation=validation, test=test, format=format,
      text_fields=text_fields, label_field=label_field, label_names=label_names, tokens_field=tokens_field,
      tags_field=tags_field, token_column=token_column, tag_column=tag_column,
      base_dirs=(os.getcwd(), _repo_root()))
  if name in seqio.TaskRegistry.names() and name not in SPECS:
    raise file_tasks.FileTaskError(f"file task name {name!r} is already a registered task (not from files); "
                                   "choose another from_files.task.name")
  examples, labels = spec.read()
  registration.add_task(name, kind=kind, vocabulary=offline.VOCABULARY, label_names=labels,
                        examples_fn=lambda split: examples.get(split, []),
                        num_examples={s: len(e) for s, e in examples.items()})
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


def input_example(task_name: str, record) -> dict:
  """An unlabelled example of a file task from a record of its fields (prediction)."""
  return SPECS[task_name].input_example(record)
