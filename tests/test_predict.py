"""mtl-predict on a trained MODEL_DIR (file tasks of every kind + an offline task): the Python API's
predictions equal the eval path's (the run's eval batches through Steps.predict_step) on the same
inputs, probabilities are the softmax of the heads' logits, and the CLI in a new process rebuilds
the tasks from config.gin alone."""

import csv
import io
import json
import subprocess
import sys

import numpy as np
import optax
import gin
import pytest
import seqio

from conftest import ONE_DEVICE, REPO, subprocess_env
from mtl_jax.input import input_pipeline, task_info
from mtl_jax.scale import partitioning
from mtl_jax import predict, train
from mtl_jax.data import splits
from mtl_jax.predict import cli
from mtl_jax.step.steps import Steps

pytestmark = pytest.mark.xdist_group("predict")  # one worker under -n: the module's trained run is built once

DATA = REPO / "examples" / "data"
LENGTHS = {"inputs": 16}


def validation_records() -> dict[str, list]:
  """Each example task's validation inputs as a user would give them (eval order)."""
  pairs = [json.loads(l) for l in open(DATA / "pairs.jsonl")]
  ratings = [l.split("\t")[0] for l in list(open(DATA / "ratings.tsv"))[1:]]
  blocks = [b for b in (DATA / "ner_validation.conll").read_text().split("\n\n") if b.strip()][1:]
  from tasks import offline
  return {
      "file_reviews": list(csv.DictReader(open(DATA / "reviews_validation.csv", newline=""))),  # extra columns too
      "file_pairs": [r for r in pairs if splits.split_of(
          f"premise: {r['premise']} hypothesis: {r['hypothesis']}") == "validation"],
      "file_ratings": [t for t in ratings if splits.split_of(t) == "validation"],  # plain texts
      "file_ner": [{"tokens": [l.split("\t")[0] for l in b.strip().splitlines()]} for b in blocks],
      "rotten_tomatoes": [e["text"] for e in offline.examples("rotten_tomatoes", "validation")[:64]],
  }


def eval_steps(predictor, batch_size: int = 64) -> Steps:
  """The trainer's Steps for the predictor's model (its predict_step is what the evaluator runs)."""
  kinds = [task_info.get(n).kind for n in predictor.task_names]
  return Steps(predictor.model, optax.sgd(0.0), kinds, predictor.mesh, partitioning.logical_axis_rules(), 0,
               batch_size, predictor.feature_lengths["inputs"])


def eval_path(predictor, steps, task: str, limit: int, batch_size: int = 64) -> list:
  """The evaluator's predictions of the first `limit` examples of `task`: its eval batches through
  Steps.predict_step."""
  names = predictor.task_names
  info = task_info.get(task)
  out = []
  for batch in input_pipeline.eval_batches(seqio.get_mixture_or_task(task), names, predictor.feature_lengths,
                                           batch_size):
    if len(out) >= limit:
      break
    pred = steps.run_predict(predictor.params, batch)[info.kind]
    for i in np.flatnonzero(batch["weight"] > 0):
      if info.kind == "tagging":
        out.append([info.label_names[p] for p in pred[i][batch["tags"][i] >= 0]])
      elif info.kind == "classification":
        out.append(info.label_names[int(pred[i])])
      else:
        out.append(float(pred[i]))
  return out[:limit]


def assert_predict_equals_eval(predictor, records: dict[str, list]) -> None:
  steps = eval_steps(predictor)
  for task, inputs in records.items():
    want = eval_path(predictor, steps, task, len(inputs))
    got = [r[task] for r in predictor.predict(inputs, tasks=[task])]
    assert len(got) == len(want) == len(inputs) > 0, task
    kind = task_info.get(task).kind
    if kind == "classification":
      assert [g["label"] for g in got] == want, task
      assert all(1.0 / task_info.get(task).num_classes <= g["probability"] <= 1.0 for g in got)
    elif kind == "regression":
      np.testing.assert_allclose([g["score"] for g in got], want, rtol=1e-5, atol=1e-6, err_msg=task)
    else:
      for g, w, rec in zip(got, want, inputs):
        assert g["words"] == rec["tokens"] and g["tags"][:len(w)] == w, task
        assert g["tags"][len(w):] == [None] * (len(rec["tokens"]) - len(w))  # cut off by TASK_FEATURE_LENGTHS


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("predict") / "run"
  assert train.main(["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/tasks/example_files.gin",
                     "--gin_file=gin/models/tiny.gin", f"--gin.TASK_FEATURE_LENGTHS={LENGTHS}", "--gin.BATCH_SIZE=16",
                     "--gin.TRAIN_STEPS=3", "--gin.trainer.train.eval_batch_size=128",
                     "--gin.optim.make_optimizer.learning_rate=0.05", f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE]) == 0
  return model_dir


@pytest.fixture(scope="module")
def predictor(model_dir):
  yield predict.load(model_dir, batch_size=64)
  gin.clear_config()  # load() installs the run's gin config: it must not reach the next module's tests


def test_predictions_equal_the_eval_path_for_every_kind(predictor):
  assert predictor.checkpoint == "best" and predictor.step == 3
  assert predictor.task_names == ("file_ner", "file_pairs", "file_ratings", "file_reviews", "rotten_tomatoes")
  assert_predict_equals_eval(predictor, validation_records())


def test_probability_is_the_softmax_of_the_pooled_logits(predictor):
  texts = ["the film was wonderful", "what a dull phone this is", "a terrible book overall"]
  feats = predictor.features("file_reviews", [{"text": t, "label": 0} for t in texts])
  out = predictor.model.apply({"params": predictor.params}, feats, deterministic=True)
  logits = np.asarray(out.pooled_logits, np.float64)[:, :2]  # the task's 2 classes (the rest masked)
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  got = predictor.predict(texts, tasks=["file_reviews"])
  for g, p in zip(got, probs):
    assert g["file_reviews"]["label"] == ("negative", "positive")[int(p.argmax())]
    np.testing.assert_allclose(g["file_reviews"]["probability"], p.max(), rtol=1e-5)


def test_cli_in_a_new_process_rebuilds_the_tasks_from_config_gin(model_dir, predictor, tmp_path):
  texts = ["the film was wonderful", "a dull camera", "the hotel was awful", "honestly a lovely album"]
  records = [{**r, "text": t} for r, t in zip(validation_records()["file_pairs"], texts)]
  path = tmp_path / "in.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  proc = subprocess.run([sys.executable, "-m", "mtl_jax.predict", f"--model_dir={model_dir}", f"--input={path}",
                         "--tasks=file_pairs,file_reviews", "--format=tsv"], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [l.split("\t") for l in proc.stdout.splitlines()]
  assert rows[0] == ["line", "task", "prediction", "probability"]
  want = predictor.predict(records, tasks=["file_pairs", "file_reviews"])
  expected = [[str(n), t, w[t]["label"], f"{w[t]['probability']:.6f}"] for n, w in enumerate(want, 1) for t in w]
  assert rows[1:] == expected
  assert "from best checkpoint (step 3)" in proc.stderr.splitlines()[-1]


def test_cli_jsonl_output_stdin_and_one_line_errors(model_dir, predictor, tmp_path, capsys, monkeypatch):
  path = tmp_path / "in.txt"
  path.write_text("Ana Silva flew to Paris today\nthe show was great\n")
  assert cli.main([f"--model_dir={model_dir}", f"--input={path}", "--tasks=file_ner,file_ratings"]) == 0
  lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
  want = predictor.predict(path.read_text().splitlines(), tasks=["file_ner", "file_ratings"])
  assert [l["line"] for l in lines] == [1, 2] and [l["tasks"] for l in lines] == want
  assert lines[0]["input"] == "Ana Silva flew to Paris today"
  assert lines[0]["tasks"]["file_ner"]["words"] == ["Ana", "Silva", "flew", "to", "Paris", "today"]

  stdin = [{"premise": "the chef cooked dinner yesterday", "hypothesis": "the chef made a meal"}]
  monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(stdin[0]) + "\n"))  # JSONL on stdin, detected
  assert cli.main([f"--model_dir={model_dir}", "--input=-", "--tasks=file_pairs"]) == 0
  assert json.loads(capsys.readouterr().out)["tasks"] == predictor.predict(stdin, tasks=["file_pairs"])[0]

  def error(*args) -> str:
    assert cli.main(list(args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([l for l in err if l.startswith("mtl-predict")]) == 1
    return err[-1]

  assert error(f"--model_dir={tmp_path}", f"--input={path}") == (
      f"mtl-predict: error: --model_dir {str(tmp_path)!r} has no run_spec.json / config.gin; point it at an "
      "mtl-train MODEL_DIR")
  assert error(f"--model_dir={model_dir}", f"--input={path}", "--tasks=file_revews") == (
      "mtl-predict: error: --tasks: file_revews not in this run; its tasks: file_ner, file_pairs, file_ratings, "
      "file_reviews, rotten_tomatoes")
  assert error(f"--model_dir={model_dir}", f"--input={path}", "--tasks=file_pairs") == (
      f"mtl-predict: error: {path}:1: task 'file_pairs' reads a sentence pair (premise, hypothesis); give the two "
      "texts separated by one tab, or JSONL with those fields, or leave it out with --tasks")
  tsv = tmp_path / "pairs.txt"  # a pair per line as TSV: the same predictions as the JSON fields
  tsv.write_text("the chef cooked dinner yesterday\tthe chef made a meal\n")
  assert cli.main([f"--model_dir={model_dir}", f"--input={tsv}", "--tasks=file_pairs"]) == 0
  assert json.loads(capsys.readouterr().out)["tasks"] == predictor.predict(stdin, tasks=["file_pairs"])[0]
  empty = tmp_path / "empty.txt"
  empty.write_text("\n")
  assert error(f"--model_dir={model_dir}", f"--input={empty}") == (
      f"mtl-predict: error: --input {empty} is empty; it needs one text (or JSON object) per line")
  holes = tmp_path / "holes.txt"
  holes.write_text("fine\n\nok\n")
  assert error(f"--model_dir={model_dir}", f"--input={holes}", "--tasks=file_reviews") == (
      "mtl-predict: error: input line 2 is empty; give one text per line (or a JSON object)")
