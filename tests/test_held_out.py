"""Held-out test scores (issue "Conclusive comparisons", item 1): results.json carries the test split
scored on the checkpoint validation selected and on the last one, and says where every number comes
from. Checked against mtl-predict's loader on the same checkpoints, scored by an independent evaluator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ONE_DEVICE, TINY_ARGS, run_main

STEPS = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("held_out") / "run"
  run_main(*TINY_ARGS, ONE_DEVICE, f"--gin.MODEL_DIR={model_dir}", f"--gin.TRAIN_STEPS={STEPS}",
           "--gin.trainer.train.eval_period=2", "--gin.trainer.train.checkpoint_period=2",
           "--gin.optim.make_optimizer.learning_rate=3e-3",
           # 'min' selects an early checkpoint (validation improves), so the selected one is NOT the last:
           # the test split is read from checkpoints_best/, and test != test_last
           "--gin.trainer.train.best_mode='min'")
  return model_dir


def _test_scores(model_dir, which):
  """The test split of every task, scored from `which` checkpoint as mtl-predict loads it."""
  import importlib
  from mtl_jax.step import evaluation
  predictor = importlib.import_module("mtl_jax.predict.load").load(model_dir, which)
  ev = evaluation.Evaluator(predictor.task_names, predictor.feature_lengths, 16,
                            splits=lambda task: ("test",), main_split="test")
  return predictor.step, ev.evaluate(predictor.run)


def test_results_name_their_splits_and_the_selected_step(run):
  results = json.loads((run / "results.json").read_text())
  best = json.loads((run / "best.json").read_text())
  assert results["step"] == STEPS
  assert results["selected_step"] == best["step"]
  assert results["selected_by"] == "validation average (min)"
  assert results["selected_step"] < STEPS
  assert results["splits"] == {"tasks": "validation", "test": "test", "test_last": "test"}
  assert set(results["test"]) == set(results["tasks"]) == set(results["test_last"])
  headlines = [r["headline"] for r in results["test"].values()]
  assert results["test_average"] == pytest.approx(float(np.mean(headlines)))
  # the test split is not the validation split
  assert any(results["test"][t]["num_examples"] != results["tasks"][t]["num_examples"]
             or results["test"][t]["headline"] != results["tasks"][t]["headline"] for t in results["tasks"])


def test_selected_test_score_equals_predict_on_that_checkpoint(run):
  results = json.loads((run / "results.json").read_text())
  step, scored = _test_scores(run, "best")
  assert step == results["selected_step"]
  for task, scores in scored["tasks"].items():
    for metric, value in scores.items():
      assert results["test"][task][metric] == pytest.approx(value, abs=1e-6), (task, metric)
  step, scored = _test_scores(run, "latest")
  assert step == STEPS
  for task, scores in scored["tasks"].items():
    assert results["test_last"][task]["headline"] == pytest.approx(scores["headline"], abs=1e-6), task


def test_a_task_without_a_test_split_is_named_once(monkeypatch):
  from mtl_jax.run import held_out
  monkeypatch.setattr(held_out, "_has_test", lambda name: name != "glue_rte")
  monkeypatch.setattr(held_out.evaluation, "Evaluator", lambda *a, **k: None)
  h = held_out.HeldOut(["rotten_tomatoes", "glue_rte"], {"inputs": 32}, 8)
  assert h.tasks == ("rotten_tomatoes",) and h.missing == ("glue_rte",)
  note = h.note()
  assert "glue_rte" in note and "\n" not in note and "test" in note


def test_compare_reads_the_test_split_of_a_finished_cell(run):
  """mtl-compare collects the selected checkpoint's test scores and compares those, not validation."""
  from mtl_jax.compare import collect, grid, tune
  results = json.loads((run / "results.json").read_text())
  cell = grid.Cell(cell_id="hard__quickstart__seed0", kind="mtl", strategy="hard", mixture="quickstart", seed=0,
                   axes=(), gin_files=(), bindings=(("TRAIN_STEPS", STEPS),))
  got = collect.collect_cell(cell, run)
  assert got["status"] == "done" and got["selected_step"] == results["selected_step"]
  for task, scores in results["test"].items():
    assert got["test"][task]["value"] == pytest.approx(scores["headline"])
  compared, _ = tune.select([got], [])
  assert compared[0]["split"] == "test"
  assert compared[0]["tasks"] == got["test"]
  assert compared[0]["average"] == pytest.approx(results["test_average"])
