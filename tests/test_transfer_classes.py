"""gin/experiments/transfer_classes_minilm.gin: two tasks per class (pair classification / regression,
extractive QA, tagging, multiple choice), and the grid runs end to end at tiny size (the tiny encoder from
scratch instead of MiniLM, TFDS tasks under tfds.testing.mock_data with hand-made records, a source of
each of two classes x a target of each of the other two)."""

import json

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import run_cell_in_process
from mtl_jax.input import task_info
from mtl_jax.transfer import cli, grid

EXPERIMENT = "gin/experiments/transfer_classes_minilm.gin"
CLASSES = {"classification": "pair", "regression": "pair", "span_qa": "qa", "tagging": "tagging",
           "multiple_choice": "choice"}


def _records():
  """40 records a builder (served for every split: train / dev are the carve of them, test all of them)."""
  squad = []
  for i in range(40):
    ctx = f"In game {i} the Denver Broncos won Super Bowl 50 in Santa Clara on a sunny day."
    q, a = [("Who won?", "Denver Broncos"), ("Where?", "Santa Clara"), ("Who lost?", "")][i % 3]
    squad.append({"id": f"q{i}", "title": "t", "context": ctx, "question": q, "is_impossible": not a,
                  "answers": {"text": [a] if a else [], "answer_start": [ctx.index(a)] if a else []},
                  "plausible_answers": {"text": [], "answer_start": []}})
  piqa = [{"id": f"p{i}", "goal": f"Cool soup number {i}", "sol1": "Blow on it", "sol2": "Heat it", "label": i % 2}
          for i in range(40)]
  conll = [{"tokens": ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb"],
            "ner": [3, 0, 7, 0, 0, 0, 7, 0], "pos": [0] * 8, "chunks": [0] * 8}] * 16
  rte = [{"sentence1": "A man is eating.", "sentence2": f"Someone eats {i}.", "label": i % 2, "idx": i}
         for i in range(40)]
  return {"squad/v2.0": squad, "piqa": piqa, "conll2003/conll2003": conll, "glue/rte": rte}


def _serve(records):
  def as_dataset(self, split, *args, **kwargs):
    rows = records[self.info.full_name.rsplit("/", 1)[0]]
    return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=self.info.features.get_tensor_spec())
  return as_dataset


def test_two_tasks_per_class_from_minilm(clean_gin):
  import tasks.glue  # noqa: F401
  import tasks.offline_qa  # noqa: F401
  import tasks.tfds_qa_choice  # noqa: F401
  exp = grid.load([EXPERIMENT])
  assert "gin/runs/minilm_finetune.gin" in exp.gin_files  # MiniLM
  assert "gin/pretrained/minilm.gin" in open("gin/runs/minilm_finetune.gin").read()
  for names in (exp.sources, exp.targets):
    per_class = {}
    for t in names:
      per_class.setdefault(CLASSES[task_info.get(t).kind], []).append(t)
    assert sorted(per_class) == ["choice", "pair", "qa", "tagging"] and all(len(v) >= 2 for v in per_class.values())
  pairs = [t for t in exp.sources if CLASSES[task_info.get(t).kind] == "pair"]
  assert all(len(tasks.glue.GLUE[t.removeprefix("glue_")]) == 2 for t in pairs)  # sentence pairs, natively


@pytest.mark.e2e  # 8 tiny runs of the binary in-process
def test_tiny_grid_across_classes_runs_end_to_end(tmp_path):
  for fn in __import__("tasks.tfds_qa_choice", fromlist=["EXAMPLES"]).EXAMPLES.values():
    fn.cache_clear()
  exp_dir, calls = tmp_path / "exp", []

  def launch(argv, log_path, env):
    calls.append(argv)
    return run_cell_in_process(argv)
  argv = [f"--experiment={EXPERIMENT}", f"--exp_dir={exp_dir}",
          "--gin.transfer.gin_files=['gin/runs/quickstart.gin', 'gin/models/tiny.gin', 'gin/models/segments.gin', "
          "'gin/tasks/task_classes.gin']",
          "--gin.transfer.sources=['squad_v2', 'conll2003_ner']", "--gin.transfer.targets=['piqa', 'glue_rte']",
          "--gin.transfer.seeds=[0]", "--gin.transfer.regimes={'n16': 16}",
          "--gin.transfer.bindings={'TASK_FEATURE_LENGTHS': {'inputs': 32}, 'BATCH_SIZE': 8, "
          "'trainer.train.eval_batch_size': 32, 'trainer.train.keep_checkpoints': 1}",
          "--gin.transfer.source_bindings={'TRAIN_STEPS': 2, 'trainer.train.eval_period': 2, "
          "'trainer.train.checkpoint_period': 2}",
          "--gin.transfer.target_bindings={'TRAIN_STEPS': 2, 'trainer.train.eval_period': 2, "
          "'trainer.train.checkpoint_period': 2}"]
  with tfds.testing.mock_data(as_dataset_fn=_serve(_records()), data_dir=str(tmp_path / "tfds")):
    assert cli.main(argv, launcher=launch, echo=lambda line: None) == 0
  assert len(calls) == 2 + 2 * 3  # 2 sources; 2 targets x (none + 2 sources)
  table = json.loads((exp_dir / "transfer_matrix.json").read_text())["matrix"]
  assert {(r["source"], r["target"]) for r in table} == {(s, t) for s in ("none", "squad_v2", "conll2003_ner")
                                                          for t in ("piqa", "glue_rte")}
  runs = exp_dir / "runs"
  source = json.loads((runs / "source__squad_v2__seed0" / "results.json").read_text())["tasks"]["squad_v2"]
  assert {"exact", "f1", "HasAns_f1", "NoAns_exact"} <= set(source)  # QA source scored as SQuAD v2
  for row in table:
    record = json.loads((runs / f"target__{row['source']}__to__{row['target']}__n16__seed0" / "results.json")
                        .read_text())
    # the held-out test: TFDS validation (glue_rte, piqa: the dev split is carved from TFDS train)
    assert row["mean"] == pytest.approx(record["test"][row["target"]]["headline"])
