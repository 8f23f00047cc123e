"""Dynamic mixing: schedules and UniMax against hand formulas, the stream following the
schedule batch by batch, the monitor's intended-vs-realised over time, exact resume (in-process
stream replay and a real kill -9 of the binary, resumed in-process)."""

import json
import signal
import subprocess
import sys

import gin
import numpy as np
import pytest

from conftest import ONE_DEVICE, REPO, TINY_ARGS, run_main, subprocess_env
from mtl_jax.input import input_pipeline as ip
from mtl_jax.input import mixing, mixing_monitor, mixing_schedule
from mtl_jax.data.word_vocab import WordVocabulary
from tasks import registration

VOCAB = WordVocabulary(200)
SIZES = {"dynmix_a": 100, "dynmix_b": 400, "dynmix_c": 1600}
LENGTHS = {"inputs": 8}
pytestmark = pytest.mark.usefixtures("clean_gin")


@pytest.fixture(scope="module")
def toy():
  for t, (name, n) in enumerate(sorted(SIZES.items())):
    registration.add_task(
        name, kind="classification", vocabulary=VOCAB, label_names=("a", "b"),
        examples_fn=lambda split, t=t, n=n: [{"text": f"w{t} w{i % 150}", "label": i % 2}
                                             for i in range(n if split == "train" else 10)])
  registration.add_mixture("dynmix", [(n, 1.0) for n in sorted(SIZES)])
  return ip.get_provider("dynmix")


def _bind(**kw):
  for k, v in kw.items():
    gin.bind_parameter(f"mixing_schedule.schedule.{k}", v)


def test_schedules_match_hand_formulas(toy):
  n = np.array([100.0, 400.0, 1600.0])
  i = np.array([0, 50, 100, 250])
  _bind(kind="interpolate", start="proportional", end="equal", steps=100)
  a = np.clip(i / 100, 0, 1)[:, None]
  want = (1 - a) * n / n.sum() + a * np.ones(3) / 3
  np.testing.assert_allclose(mixing_schedule.schedule(toy).rates_at(i), want, rtol=1e-12)
  _bind(kind="temperature", temperatures=(1.0, 4.0), steps=100)
  tau = 1 + 3 * a
  want = n ** (1 / tau)
  np.testing.assert_allclose(mixing_schedule.schedule(toy).rates_at(i), want / want.sum(1, keepdims=True),
                             rtol=1e-12)
  _bind(kind="staged", stages=[(50, {"dynmix_a": 1, "dynmix_b": 0, "dynmix_c": 0}), (None, "equal")])
  got = mixing_schedule.schedule(toy).rates_at([0, 49, 50, 999])
  np.testing.assert_array_equal(got, [[1, 0, 0], [1, 0, 0], [1 / 3] * 3, [1 / 3] * 3])
  _bind(kind="jiant", expressions={"dynmix_a": "1", "dynmix_b": "2 * t", "dynmix_c": "1 / sqrt(t)"})
  t = (i + 1).astype(float)
  want = np.stack([np.ones_like(t), 2 * t, 1 / np.sqrt(t)], 1)
  np.testing.assert_allclose(mixing_schedule.schedule(toy).rates_at(i), want / want.sum(1, keepdims=True),
                             rtol=1e-12)


def test_unimax_by_hand():
  # budget 1000, 2 epochs: 'a' (100) can take 200 < 1000/3, the rest split the remaining 800
  # uniformly (400 each; 'b' (300) is capped at 600, so 400 stands)
  got = mixing.unimax({"a": 100, "b": 300, "c": 5000}, budget=1000, max_epochs=2)
  assert got == pytest.approx({"a": 0.2, "b": 0.4, "c": 0.4})
  # a budget beyond every cap: each task gets exactly max_epochs epochs
  got = mixing.unimax({"a": 100, "b": 300}, budget=10_000, max_epochs=1)
  assert got == pytest.approx({"a": 0.25, "b": 0.75})


def test_unimax_strategy_uses_train_steps_times_batch(toy):
  gin.parse_config(["TRAIN_STEPS = 10", "BATCH_SIZE = 30", "mixing.rates.strategy = 'unimax'"])
  # budget 300 examples, 1 epoch: 100 each (a's cap is 100)
  assert mixing.rates(toy) == pytest.approx({n: 1 / 3 for n in SIZES})


def test_bad_settings_one_line(toy):
  _bind(kind="jiant", expressions={"dynmix_a": "1", "dynmix_b": "__import__('os')", "dynmix_c": "1"})
  with pytest.raises(ValueError, match="not allowed"):
    mixing_schedule.schedule(toy)
  _bind(kind="staged", stages=[(10, "equal")])
  with pytest.raises(ValueError, match=r"\(None, rate set\)"):
    mixing_schedule.schedule(toy)
  _bind(kind="linear")
  with pytest.raises(ValueError, match="use one of"):
    mixing_schedule.schedule(toy)
  _bind(kind="staged", stages=[(10, "equal"), (None, "proportional")])
  with pytest.raises(ValueError, match="needs the 'mixed' batch layout"):
    next(ip.train_batches(toy, LENGTHS, 6, seed=0, layout="grouped"))


def _task_ids(toy, n, batch=64, start=0):
  it = ip.train_batches(toy, LENGTHS, batch, seed=3, start_batch=start)
  return np.stack([next(it)["task_id"] for _ in range(n)])


def test_stream_follows_the_schedule_and_monitor_logs_it(toy):
  only_a = {"dynmix_a": 1, "dynmix_b": 0, "dynmix_c": 0}
  _bind(kind="staged", stages=[(5, only_a), (10, "equal"), (None, {"dynmix_a": 0, "dynmix_b": 1, "dynmix_c": 3})])
  tid = _task_ids(toy, 40)
  assert (tid[:5] == 0).all()  # stage 1: task a only
  counts = np.stack([np.bincount(tid[10:].ravel(), minlength=3)])[0]
  assert counts[0] == 0 and abs(counts[2] / counts[1:].sum() - 0.75) < 0.03  # 30 * 64 rows, sd ~0.01
  eq = np.bincount(tid[5:10].ravel(), minlength=3) / tid[5:10].size
  assert np.abs(eq - 1 / 3).max() < 0.08
  monitor = mixing_monitor.MixingMonitor.from_provider(toy)
  for k in range(5):
    monitor.update({"task_id": tid[k]})
  s = monitor.scalars()
  assert s["mixing/window_intended/dynmix_a"] == 1.0 and s["mixing/window_realised/dynmix_a"] == 1.0
  for k in range(5, 40):
    monitor.update({"task_id": tid[k]})
  s = monitor.scalars()
  # window over batches 5..39: 5 equal + 30 at (0, 1/4, 3/4)
  want = (5 * np.full(3, 1 / 3) + 30 * np.array([0, 0.25, 0.75])) / 35
  got = [s[f"mixing/window_intended/{n}"] for n in sorted(SIZES)]
  np.testing.assert_allclose(got, want, rtol=1e-12)
  np.testing.assert_allclose([s[f"mixing/scheduled/{n}"] for n in sorted(SIZES)], [0, 0.25, 0.75])
  cumulative = (5 * np.array([1, 0, 0]) + want * 35) / 40
  np.testing.assert_allclose(monitor.intended, cumulative, rtol=1e-12)
  assert s["mixing/max_abs_z"] < 5
  # a monitor restored from counts (a resume) intends the same
  resumed = mixing_monitor.MixingMonitor.from_provider(toy)
  resumed.counts[:] = monitor.counts
  resumed.update({"task_id": tid[0]})  # first batch after resume tells it the batch size
  again = mixing_monitor.MixingMonitor.from_provider(toy)
  for k in range(40):
    again.update({"task_id": tid[k]})
  again.update({"task_id": tid[0]})
  np.testing.assert_allclose(resumed.intended, again.intended, rtol=1e-12)


def test_resume_replays_the_same_scheduled_stream(toy):
  _bind(kind="interpolate", start="proportional", end="equal", steps=12)
  whole = ip.train_batches(toy, LENGTHS, 16, seed=5)
  batches = [next(whole) for _ in range(12)]
  resumed = ip.train_batches(toy, LENGTHS, 16, seed=5, start_batch=7)
  for b in batches[7:]:
    got = next(resumed)
    for k in b:
      np.testing.assert_array_equal(got[k], b[k])


STEPS = 12
STAGED = ("--gin.mixing_schedule.schedule.kind='staged'",
          "--gin.mixing_schedule.schedule.stages=[(4, {'bbc_topic': 0, 'rotten_tomatoes': 1, 'vader_tweets': 0}), "
          "(None, {'bbc_topic': 1, 'rotten_tomatoes': 0, 'vader_tweets': 1})]")
COMMON = (*TINY_ARGS, f"--gin.TRAIN_STEPS={STEPS}", "--gin.trainer.train.checkpoint_period=2",
          f"--gin.trainer.train.eval_period={STEPS}", "--gin.trainer.train.log_period=1",
          "--gin_file=gin/mixing/staged.gin", *STAGED, ONE_DEVICE)  # the child (8 devices) and main(): one mesh


def _final(model_dir):
  import jax
  import orbax.checkpoint as ocp
  step = model_dir / "checkpoints" / str(STEPS)
  tree = ocp.StandardCheckpointer().restore(step / "state")
  meta = json.loads(next((step / "meta").glob("*")).read_text()) if (step / "meta").is_dir() else None
  return [np.asarray(x) for x in jax.tree.leaves(tree)], meta


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_kill9_mid_schedule_then_resume_is_exact(tmp_path):
  # the uninterrupted and the resumed run are main() in-process; the killed one a child on the same 8 fake
  # devices (results depend on the device count, not on the process: child and in-process agree bit for bit)
  whole = tmp_path / "whole"
  run_main(*COMMON, f"--gin.MODEL_DIR={whole}")
  killed = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, "-m", "mtl_jax.train", "--no_progress", *COMMON,
                           f"--gin.MODEL_DIR={killed}"], cwd=REPO, env=subprocess_env(devices=8),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  import time
  deadline = time.time() + 300
  while not (killed / "checkpoints" / "6" / "meta").exists():  # past the stage change at step 4
    assert proc.poll() is None and time.time() < deadline, "run ended before the kill point"
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "checkpoints" / str(STEPS)).exists()  # killed before the end
  out = run_main(*COMMON, f"--gin.MODEL_DIR={killed}")
  assert "resuming from checkpoint at step" in out.stdout
  (a, meta_a), (b, meta_b) = _final(whole), _final(killed)
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert meta_a == meta_b and meta_a["batches_consumed"] == STEPS
  counts = meta_a["mixing_counts"]  # tasks sorted: bbc_topic, rotten_tomatoes, vader_tweets
  assert counts[1] == 4 * 16 and counts[0] + counts[2] == 8 * 16  # stage 1 only rotten, then never
  assert json.loads((whole / "results.json").read_text()) == json.loads((killed / "results.json").read_text())
