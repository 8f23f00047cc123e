"""kill -9 and exact resume, SIGTERM preemption (also during evaluation, during a save, twice),
a second trainer on the same MODEL_DIR, a full disk, corrupt checkpoints, non-finite losses.

kill -9, SIGTERM and the real full disk hit a real subprocess of the binary (tiny model), given this
process's 8 fake devices; everything else runs main() in-process (no interpreter start): the uninterrupted
reference, the final resumes (results follow the device count, not the process: an 8-device child and an
in-process run agree bit for bit), and the awkward-moment cases with faults injected at a chosen step
(mtl_jax/run/faults.py). 'Exact' means the final
TrainState (params, optimizer state, step) is bit-identical to an uninterrupted
run with the same seed, and so are the evaluation results.
"""

import json
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import ONE_DEVICE, REPO, TINY_ARGS, run_binary, run_main, subprocess_env
from mtl_jax import train

pytestmark = pytest.mark.xdist_group("resilience")  # one worker under -n: the uninterrupted reference runs once

STEPS = 12
# ONE_DEVICE: every run on a 1-device mesh of 8 fake devices, children (given 8) and in-process alike
COMMON = (*TINY_ARGS, f"--gin.TRAIN_STEPS={STEPS}", "--gin.trainer.train.checkpoint_period=2",
          f"--gin.trainer.train.eval_period={STEPS}", "--gin.trainer.train.log_period=1", ONE_DEVICE)


def _env():
  return subprocess_env(devices=8)  # the in-process references' devices: compared bit for bit


def _start(model_dir, *extra):
  return subprocess.Popen([sys.executable, "-m", "mtl_jax.train", "--no_progress", *COMMON,
                           f"--gin.MODEL_DIR={model_dir}", *extra], cwd=REPO, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _wait_for(predicate, proc, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.005)
  raise TimeoutError("condition not reached")


def _state(model_dir, step):
  tree = ocp.StandardCheckpointer().restore(model_dir / "checkpoints" / str(step) / "state")
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_identical(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The reference, in-process on the killed children's 8 devices (other device counts differ in the last bits)."""
  model_dir = tmp_path_factory.mktemp("uninterrupted")
  run_main(*COMMON, f"--gin.MODEL_DIR={model_dir}")
  return model_dir


def _ckpt_dir_exists(model_dir, step):
  return lambda: (model_dir / "checkpoints" / str(step) / "meta").exists()


def _save_in_progress(model_dir, after_step):
  def seen():
    root = model_dir / "checkpoints"
    return root.exists() and any("tmp" in p.name and p.name.split(".")[0].isdigit()
                                 and int(p.name.split(".")[0]) > after_step for p in root.iterdir())
  return seen


def _kill9_when(model_dir, cond):
  proc = _start(model_dir)
  reached = _wait_for(cond, proc)
  proc.send_signal(signal.SIGKILL)
  out, _ = proc.communicate()
  assert reached, "run ended before the kill point"
  return out


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_kill9_after_a_checkpoint_then_during_a_save_then_resume_is_bit_identical(uninterrupted, tmp_path):
  """One chain: killed after step 4's checkpoint; the resumed child killed again while a save after
  step 6 is in progress; the last resume ends where the uninterrupted run did."""
  model_dir = tmp_path / "killed"
  _kill9_when(model_dir, _ckpt_dir_exists(model_dir, 4))
  assert (model_dir / "checkpoints" / "4").exists()
  out = _kill9_when(model_dir, _save_in_progress(model_dir, 6))
  assert "resuming from checkpoint at step " in out, out
  assert int(out.split("resuming from checkpoint at step ")[1].split()[0]) >= 4, out
  resumed = run_main(*COMMON, f"--gin.MODEL_DIR={model_dir}")
  assert "resuming from checkpoint at step" in resumed.stdout
  assert int(resumed.stdout.split("resuming from checkpoint at step ")[1].split()[0]) >= 6, resumed.stdout
  _assert_identical(_state(uninterrupted, STEPS), _state(model_dir, STEPS))
  a = json.loads((uninterrupted / "results.json").read_text())
  b = json.loads((model_dir / "results.json").read_text())
  assert a == b


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_sigterm_saves_and_exits_zero_then_resumes(tmp_path, capsys):
  model_dir = tmp_path / "preempted"
  proc = _start(model_dir, "--gin.TRAIN_STEPS=100000", "--gin.trainer.train.checkpoint_period=2",
                "--gin.trainer.train.eval_period=1000")
  # in the loop (its SIGTERM handler installed): the refusal below is immediate now (the lock comes first)
  _wait_for(_ckpt_dir_exists(model_dir, 2), proc)
  # a second trainer on the same MODEL_DIR (in-process) is refused, naming the running one
  rc = train.main([*COMMON, f"--gin.MODEL_DIR={model_dir}"])
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert rc == 2 and f"is in use by another trainer (host {socket.gethostname()} pid {proc.pid} since" in line, line
  assert proc.poll() is None  # the owner runs on
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  line = [l for l in out.splitlines() if "SIGTERM received" in l]
  assert len(line) == 1, out
  step = int(line[0].split("checkpoint at step ")[1].split()[0])
  assert (model_dir / "checkpoints" / str(step)).exists()
  again = run_main(*COMMON, f"--gin.MODEL_DIR={model_dir}", f"--gin.TRAIN_STEPS={step + 2}",
                     "--gin.trainer.train.checkpoint_period=1000", "--gin.trainer.train.eval_period=1000")
  assert f"resuming from checkpoint at step {step}" in again.stdout
  assert json.loads((model_dir / "results.json").read_text())["step"] == step + 2


def _truncate_largest(path):
  files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  victim = files[-1]
  with open(victim, "r+b") as f:
    f.truncate(victim.stat().st_size // 2)


def _delete_state(path):
  import shutil
  shutil.rmtree(path / "state")


@pytest.fixture(scope="module")
def six_steps(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("six_steps") / "run"
  run_main(*COMMON, f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=6")
  return model_dir


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
@pytest.mark.parametrize("damage", [_truncate_largest, _delete_state], ids=["truncated", "partially_deleted"])
def test_corrupt_latest_checkpoint_falls_back(six_steps, tmp_path, damage):
  import shutil
  model_dir = tmp_path / "corrupt"
  shutil.copytree(six_steps, model_dir)
  damage(model_dir / "checkpoints" / "6")
  out = run_main(*COMMON, f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=8").stdout
  assert "checkpoint at step 6 is unreadable" in out, out
  assert "resuming from checkpoint at step 4" in out, out
  assert (model_dir / "corrupt_checkpoints" / "6").exists()  # kept for inspection, not deleted
  assert json.loads((model_dir / "results.json").read_text())["step"] == 8


NAN_ARGS = ("--gin.optim.make_optimizer.learning_rate=1e30", "--gin.optim.make_optimizer.warmup_steps=0",
            "--gin.trainer.train.checkpoint_period=1")


def test_nonfinite_loss_stops_naming_step_and_tasks_keeping_good_checkpoint(tmp_path):
  model_dir = tmp_path / "nan"
  proc = run_main(*COMMON, f"--gin.MODEL_DIR={model_dir}", *NAN_ARGS, check=False)
  assert proc.returncode == 2
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith("mtl-train: error: non-finite loss at step ") and "vader_tweets" in line, line
  bad_step = int(line.split("at step ")[1].split()[0])
  saved = sorted(int(p.name) for p in (model_dir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and max(saved) < bad_step  # nothing at or after the bad step
  assert all(np.isfinite(x).all() for x in _state(model_dir, max(saved)))


def test_nonfinite_update_is_not_applied_and_training_continues():
  """In-jit guard: an Inf target leaves params and optimizer state untouched; the next
  finite batch updates as usual (what 'skip' relies on, and why 'stop' never saves bad state)."""
  sys.path.insert(0, str(REPO / "tests"))
  from helpers import fixed_batch, tiny_steps
  steps = tiny_steps()
  state = steps.init_state()
  before = [np.asarray(x) for x in jax.tree.leaves((state.params, state.opt_state))]
  bad = fixed_batch()
  bad["score"] = bad["score"].copy()
  bad["score"][1] = np.inf  # task 1 is the regression task
  state, metrics = steps.run_train_step(state, bad)
  assert not bool(metrics["finite"]) and int(state.step) == 1
  assert not np.isfinite(np.asarray(metrics["task_loss"])[1])
  _assert_identical(before, [np.asarray(x) for x in jax.tree.leaves((state.params, state.opt_state))])
  state, metrics = steps.run_train_step(state, fixed_batch())
  assert bool(metrics["finite"])
  after = [np.asarray(x) for x in jax.tree.leaves(state.params)]
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))


AWKWARD = (*TINY_ARGS, "--gin.TRAIN_STEPS=8", "--gin.trainer.train.checkpoint_period=2",
           "--gin.trainer.train.eval_period=4", "--gin.trainer.train.log_period=1", ONE_DEVICE)


def _main_with_faults(monkeypatch, model_dir, faults=""):
  monkeypatch.setenv("MTL_JAX_FAULTS", faults)
  return train.main(["--no_progress", *AWKWARD, f"--gin.MODEL_DIR={model_dir}"])


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_sigterm_in_eval_then_twice_in_a_save_then_disk_full_each_resumes_exactly(tmp_path, monkeypatch, capsys):
  """One chain of runs in-process: each interruption leaves a usable checkpoint, and the run
  finished after all of them is bit-identical to an uninterrupted one."""
  reference = tmp_path / "reference"
  assert _main_with_faults(monkeypatch, reference) == 0
  model_dir = tmp_path / "interrupted"
  capsys.readouterr()
  # SIGTERM in the middle of the first evaluation (step 4): finished, then saved at step 4
  assert _main_with_faults(monkeypatch, model_dir, "sigterm_eval@1") == 0
  out = capsys.readouterr().out
  assert "SIGTERM received: saved a checkpoint at step 4" in out, out
  # SIGTERM while step 6's checkpoint is written, and again while the preemption save closes
  assert _main_with_faults(monkeypatch, model_dir, "sigterm_twice_save@6") == 0
  out = capsys.readouterr().out
  assert "resuming from checkpoint at step 4" in out and out.count("SIGTERM received") == 1, out
  assert "saved a checkpoint at step 6" in out, out
  # the disk fills up during the save at step 8: one line, partial dir removed, non-zero exit
  assert _main_with_faults(monkeypatch, model_dir, "enospc_checkpoint@8") == 2
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert line.startswith(f"mtl-train: error: cannot write to MODEL_DIR {model_dir} at step 8 while saving the "
                         "checkpoint of step 8: No space left on device ("), line
  assert " free); the last good checkpoint is step 6 " in line and "1 partial checkpoint(s) removed" in line, line
  assert not [p for p in (model_dir / "checkpoints").iterdir() if not p.name.isdigit()]
  assert not (model_dir / "trainer.lock").exists()
  # space is back: the same command resumes from step 6 and ends where the uninterrupted run did
  assert _main_with_faults(monkeypatch, model_dir) == 0
  assert "resuming from checkpoint at step 6" in capsys.readouterr().out
  _assert_identical(_state(reference, 8), _state(model_dir, 8))
  assert json.loads((reference / "results.json").read_text()) == json.loads((model_dir / "results.json").read_text())


@pytest.fixture
def small_tmpfs(tmp_path):
  """A 4 MiB tmpfs (room for two tiny checkpoints), where the machine lets us mount one (root)."""
  mount = tmp_path / "small"
  mount.mkdir()
  made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
  if made.returncode != 0:
    pytest.skip("cannot mount a tmpfs here; the injected-fault test covers the disk-full path")
  yield mount
  subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_real_full_disk_one_line_then_resume_is_exact_once_space_is_back(uninterrupted, small_tmpfs):
  model_dir = small_tmpfs / "run"
  proc = run_binary(*COMMON, f"--gin.MODEL_DIR={model_dir}", env_extra={"devices": 8}, check=False)
  line = proc.stderr.strip().splitlines()[-1]
  assert proc.returncode == 2 and line.startswith(f"mtl-train: error: cannot write to MODEL_DIR {model_dir} at step ")
  assert "No space left on device (" in line and "the last good checkpoint is step " in line, line
  assert not [p for p in (model_dir / "checkpoints").iterdir() if not p.name.isdigit()]  # partial dirs gone
  subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)
  resumed = run_main(*COMMON, f"--gin.MODEL_DIR={model_dir}")
  assert "resuming from checkpoint at step" in resumed.stdout
  _assert_identical(_state(uninterrupted, STEPS), _state(model_dir, STEPS))
  assert json.loads((uninterrupted / "results.json").read_text()) == json.loads((model_dir / "results.json").read_text())
