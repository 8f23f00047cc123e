"""128 tasks: the synthetic _t128 mixture trains with hard, soft and MMoE sharing (sluice-free),
the train step has no per-task unrolling (the same program at T=8 and T=128), packed evaluation
equals per-task evaluation with ceil(N / B) predict calls, and reports stay readable."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from helpers import TINY, tiny_steps
from mtl_jax.step import evaluation, step_hooks
from mtl_jax.input import input_pipeline as ip
from mtl_jax.compare import aggregate, report
from mtl_jax.data.word_vocab import WordVocabulary
from tasks import registration
from conftest import ONE_DEVICE

pytestmark = [pytest.mark.usefixtures("clean_gin"), pytest.mark.xdist_group("many_tasks")]  # one t128 run


_FIRST_BATCH = []


@step_hooks.register("test_many_tasks_first_batch")
def _record_first_batch(context):
  """Keeps the run's first train batch, so the strategy tests below reuse the run's 128 pipelines."""
  del context

  class Hook:
    def after_step(self, step, state, batch):
      if step == 1:
        _FIRST_BATCH.append({k: np.array(v) for k, v in batch.items()})

    def close(self, step, state):
      pass
  return Hook()


@pytest.fixture(scope="module")
def t128_run(tmp_path_factory):
  """One 2-step run of the 128-task mixture (train + packed eval): building 128 seqio pipelines per
  split is what costs, so the file builds them once."""
  import gin
  from mtl_jax import train
  gin.clear_config()
  model_dir = tmp_path_factory.mktemp("t128")
  _FIRST_BATCH.clear()
  rc = train.main(["--no_progress", "--gin_file=gin/runs/many_tasks.gin", "--gin_file=gin/models/tiny.gin",
                   f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=128",
                   "--gin.trainer.train.eval_period=2", "--gin.step_hooks.names=['test_many_tasks_first_batch']",
                   ONE_DEVICE])
  gin.clear_config()
  return rc, model_dir, _FIRST_BATCH[0]


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_t128_mixture_trains_end_to_end(t128_run):
  rc, model_dir, _ = t128_run
  assert rc == 0
  record = json.loads((model_dir / "results.json").read_text())
  assert len(record["tasks"]) == 128
  assert all(r["num_examples"] == 50 for r in record["tasks"].values())
  assert 0.0 <= record["average"] <= 1.0


@pytest.fixture(scope="module")
def t128_batch(t128_run):
  """The run's first batch: the same call as ip.train_batches(mixture, {'inputs': 32}, 128, seed=0)."""
  return t128_run[2]


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
@pytest.mark.parametrize("sharing", ["hard", "soft", "mmoe"])
def test_t128_batch_trains_with_every_sluice_free_strategy(t128_batch, sharing):
  from tasks.synthetic import VOCABULARY
  cfg = dataclasses.replace(TINY, vocab_size=VOCABULARY.vocab_size, num_layers=1, dropout_rate=0.0)
  steps = tiny_steps(sharing, kinds=("classification",) * 128, num_classes=(2,) * 128, batch_size=128,
                     length=32, config=cfg, lr=1e-2)
  state = steps.init_state()
  losses = []
  for _ in range(4):
    state, metrics = steps.run_train_step(state, t128_batch)
    losses.append(float(metrics["loss"]))
  count = np.asarray(metrics["task_count"])
  assert count.sum() == 128 and (count > 0).sum() == len(np.unique(t128_batch["task_id"])) > 40
  assert np.isfinite(losses).all() and losses[-1] < losses[0]


def _program_size(sharing, num_tasks):
  cfg = dataclasses.replace(TINY, num_layers=1, dropout_rate=0.0)
  steps = tiny_steps(sharing, kinds=("classification",) * num_tasks, num_classes=(2,) * num_tasks,
                     batch_size=16, length=8, config=cfg)
  batch = {k: jax.numpy.asarray(v) for k, v in __import__("mtl_jax.step.steps", fromlist=["x"]).dummy_batch(16, 8).items()}
  return len(jax.make_jaxpr(steps._train_step)(steps.abstract_state, batch).jaxpr.eqns)  # shapes only: no init


@pytest.mark.parametrize("sharing", ["hard", "soft", "mmoe"])
def test_no_per_task_unrolling(sharing):
  # a Python loop over tasks would add equations per task; vectorised code has the same program
  assert _program_size(sharing, 8) == _program_size(sharing, 128)


VOCAB = WordVocabulary(60)


@pytest.fixture(scope="module")
def small_tasks():
  names = []
  for t, n in enumerate([5, 9, 3, 12]):
    name = f"pack_t{t}"
    registration.add_task(name, kind="classification" if t % 2 == 0 else "regression", vocabulary=VOCAB,
                          label_names=("a", "b") if t % 2 == 0 else (),
                          examples_fn=lambda split, t=t, n=n: [
                              {"text": f"w{t} w{i} w{(i * 7) % 50}", "label": i % 2, "score": i / 10.0}
                              for i in range(n)])
    names.append(name)
  return tuple(names)


def test_packed_eval_equals_per_task_eval_with_linear_calls(small_tasks):
  steps = tiny_steps("hard", kinds=("classification", "regression") * 2, num_classes=(2, 1, 2, 1),
                     batch_size=8, length=8, config=dataclasses.replace(TINY, vocab_size=60))
  params = steps.init_state().params
  calls = []

  def predict(b):
    calls.append(len(b["task_id"]))
    return steps.run_predict(params, b)

  plain = evaluation.Evaluator(small_tasks, {"inputs": 8}, 8)
  assert not plain.packed  # <= 32 tasks: evaluation as before
  want = plain.evaluate(predict)
  assert len(calls) == 1 + 2 + 1 + 2  # one task per batch
  calls.clear()
  plain.packed = True
  got = plain.evaluate(predict)
  assert len(calls) == -(-(5 + 9 + 3 + 12) // 8)  # 29 examples -> 4 packed calls
  assert got == want
  assert steps.predict_step._cache_size() == 1


def _group(num_tasks):
  tasks = {}
  for t in range(num_tasks):
    mean = 0.5 + 0.003 * t
    tasks[f"synthetic_r50_t128_task{t}"] = {"metric": "accuracy", "lower_is_better": False, "mean": mean,
                                            "std": 0.001, "n": 2, "single_mean": 0.6, "single_std": 0.001,
                                            "diff": mean - 0.6, "vs_single": {"direction": -1}}
  return {"tasks": tasks}


def test_report_at_128_tasks_is_per_family_with_best_and_worst():
  group = _group(128)
  fams = aggregate.family_summary(group)
  assert [f["family"] for f in fams] == [f"family{k}" for k in range(8)]
  f0 = fams[0]
  want = np.mean([0.5 + 0.003 * t for t in range(16)])
  assert f0["tasks"] == 16 and f0["mean"] == pytest.approx(want) and f0["gain_vs_single"] == pytest.approx(want - 0.6)
  assert f0["better"] == 0 and f0["worse"] == 16
  best, worst = aggregate.best_and_worst(group, k=3)
  assert best == [f"synthetic_r50_t128_task{t}" for t in (127, 126, 125)]
  assert worst == [f"synthetic_r50_t128_task{t}" for t in (0, 1, 2)]
  lines = report._task_table({"hard": group}, ["hard"])
  assert len(lines) < 20 and "results.csv" in lines[0]
  rows = [line for line in lines if line.startswith("| family") and "| hard |" in line]
  assert len(rows) == 8 and rows[0].startswith("| family0 | hard | 16 | ")
  assert any("synthetic_r50_t128_task127 (0.881)" in line for line in lines)
  small = {"tasks": dict(list(group["tasks"].items())[:3])}
  assert len(report._task_table({"hard": small}, ["hard"])) == 2 + 3  # few tasks: the full table


def test_mixture_has_128_tasks_in_families():
  import tasks.synthetic_many as many
  names = ip.task_names(ip.get_provider("synthetic_r50_t128"))
  assert len(names) == 128
  assert {many.family_of(n) for n in names} == {f"family{k}" for k in range(8)}
  assert many.family_of("synthetic_r50_t128_task37") == "family2" == aggregate.family_of("synthetic_r50_t128_task37")
