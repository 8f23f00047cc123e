"""A finished cell is really finished (issue #27): results.json only after its final checkpoint is committed,
refusals of a source without it, damaged cell files named in one line and rerun, a moved experiment reruns
nothing, two grids on one experiment, SIGTERM to a grid. Fake cells (no JAX) except where the trainer's own
order is the point; real child processes only where the process boundary is (two runners, signals)."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ONE_DEVICE, REPO, TINY_ARGS, run_main, subprocess_env
from test_compare_fakes import write_cell

from mtl_jax.compare import cli as compare_cli
from mtl_jax.compare import runner
from mtl_jax.run import finished
from mtl_jax.transfer import cli as transfer_cli

HERE = pathlib.Path(__file__).resolve().parent
COMPARE = ["--gin_file=gin/base.gin", "--strategies=hard", "--mixtures=synthetic_r0_t2", "--seeds=0",
           "--binding=TRAIN_STEPS=10"]
TRANSFER = ["--experiment=gin/experiments/transfer_tiny.gin", "--gin.transfer.regimes={'n64': 64}",
            "--gin.transfer.sources=['vader_movie']", "--gin.transfer.targets=['bbc_topic']",
            "--gin.transfer.source_bindings={'TRAIN_STEPS': 4, 'trainer.train.checkpoint_period': 2}",
            "--gin.transfer.target_bindings={'TRAIN_STEPS': 3, 'trainer.train.checkpoint_period': 3}"]


def _args(argv) -> dict:
  return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)


def fake_launcher(calls):
  """An in-process stand-in for the train binary: writes a finished cell (results.json, its committed
  checkpoint, run_spec.json) and records the MODEL_DIR it was launched on."""
  def launch(argv, log_path, env):
    args = _args(argv)
    model_dir = pathlib.Path(args["gin.MODEL_DIR"])
    calls.append(str(model_dir))
    write_cell(model_dir, "hard", args["gin.MIXTURE_OR_TASK_NAME"], int(args["gin.trainer.train.seed"]),
               int(args["gin.TRAIN_STEPS"]), mixing=False)
    (model_dir / "run_spec.json").write_text("{}")
    return 0
  return launch


# --- 1. results.json after the final checkpoint; a source without it is refused ----------------------------

def test_final_results_json_is_written_after_its_checkpoint_is_committed(tmp_path, monkeypatch):
  from mtl_jax.step import evaluation
  seen, write = [], evaluation.write_results

  def spy(model_dir, step, record):
    seen.append((step, finished.committed_steps(model_dir)))
    return write(model_dir, step, record)
  monkeypatch.setattr(evaluation, "write_results", spy)
  model_dir = tmp_path / "run"
  run_main(*TINY_ARGS, ONE_DEVICE, f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=4",
           "--gin.trainer.train.eval_period=2", "--gin.trainer.train.checkpoint_period=2")
  assert [step for step, _ in seen] == [2, 4]
  assert 4 in seen[-1][1]  # the final checkpoint was committed before the final results.json
  assert json.loads((model_dir / "results.json").read_text())["step"] == 4
  assert finished.state(model_dir, 4).finished


def _source_killed_before_its_final_checkpoint(model_dir: pathlib.Path) -> pathlib.Path:
  """What a kill in the old window left: results.json at 30, checkpoints 10 and 20 and a partial 30."""
  (model_dir / "config.gin").parent.mkdir(parents=True)
  (model_dir / "config.gin").write_text("TRAIN_STEPS = 30\n")
  (model_dir / "run_spec.json").write_text(json.dumps({"sharing": "hard", "tasks": ["a"], "encoder": {}}))
  (model_dir / "results.json").write_text(json.dumps({"step": 30, "tasks": {}, "average": 0.7}))
  for step in (10, 20):
    for item in ("state", "meta"):
      (model_dir / "checkpoints" / str(step) / item).mkdir(parents=True)
  (model_dir / "checkpoints" / "30.orbax-checkpoint-tmp-1712").mkdir()
  return model_dir


def test_results_without_their_checkpoint_are_not_finished_and_init_from_refuses(tmp_path):
  from mtl_jax.compare.grid import Cell
  from mtl_jax.transfer import init_from
  source = _source_killed_before_its_final_checkpoint(tmp_path / "runs" / "source")
  cell = Cell("source", "source", "hard", "a", 0, (), (), (("TRAIN_STEPS", 30),))
  state = runner.check(cell, source)
  assert not state.finished and not runner.is_done(cell, source)
  assert state.problem == (f"{source / 'results.json'} is at step 30 but its checkpoint {source / 'checkpoints' / '30'}"
                           " is missing (newest committed: step 20)")
  with pytest.raises(ValueError) as refused:
    init_from.restore_params(source, "latest")
  message = str(refused.value)
  assert "\n" not in message and str(source) in message and "checkpoints/30 is missing" in message
  assert "rerun the source" in message


def test_transfer_reruns_a_source_whose_final_checkpoint_is_missing_before_its_targets(tmp_path):
  exp_dir, calls, lines = tmp_path / "exp", [], []
  assert transfer_cli.main([*TRANSFER, f"--exp_dir={exp_dir}"], launcher=fake_launcher(calls), echo=lines.append) == 0
  source = exp_dir / "runs" / "source__vader_movie__seed0"
  assert len(calls) == 3 and calls[0] == str(source)
  shutil.rmtree(source / "checkpoints" / "4")  # results.json at 4, no committed checkpoint 4
  calls.clear()
  lines.clear()
  assert transfer_cli.main([*TRANSFER, f"--exp_dir={exp_dir}"], launcher=fake_launcher(calls), echo=lines.append) == 0
  assert calls == [str(source)]  # the source is redone; its targets were not started from step 2
  assert any(l.startswith("mtl-compare: damaged: ") and "checkpoints/4 is missing" in l for l in lines), lines


# --- 3. damaged cell files: one line each, the cell rerun -----------------------------------------------------

def test_damaged_cell_files_are_named_and_the_cells_rerun(tmp_path):
  exp_dir, calls, lines = tmp_path / "exp", [], []
  argv = [*COMPARE, f"--exp_dir={exp_dir}"]
  assert compare_cli.main(argv, launcher=fake_launcher(calls), echo=lines.append) == 0
  runs = exp_dir / "runs"
  cells = sorted(p.name for p in runs.iterdir())
  assert len(cells) == 3 and len(calls) == 3
  garbage_spec, truncated, no_checkpoints = (runs / c for c in cells)
  (garbage_spec / "run_spec.json").write_text("\x00\x00 not json")
  results = (truncated / "results.json").read_text()
  (truncated / "results.json").write_text(results[: len(results) // 2])
  shutil.rmtree(no_checkpoints / "checkpoints")
  calls.clear()
  lines.clear()
  assert compare_cli.main([*argv, "--dry_run"], echo=lines.append) == 0
  assert lines[-1] == "mtl-compare: 3 cells, 3 to run"
  lines.clear()
  assert compare_cli.main(argv, launcher=fake_launcher(calls), echo=lines.append) == 0
  assert sorted(calls) == sorted(str(p) for p in (garbage_spec, truncated, no_checkpoints))
  damaged = [l for l in lines if l.startswith("mtl-compare: damaged: ")]
  expected = [f"{garbage_spec / 'run_spec.json'} is not valid JSON", f"{truncated / 'results.json'} is not valid JSON",
              f"{no_checkpoints / 'results.json'} is at step 10 but its checkpoint "
              f"{no_checkpoints / 'checkpoints' / '10'} is missing (no committed checkpoint)"]
  for text in expected:
    assert any(text in l for l in damaged), (text, damaged)
  assert any(f"moved to run_spec.json.damaged" in l for l in damaged)
  assert (garbage_spec / "run_spec.json.damaged").read_bytes() == b"\x00\x00 not json"  # kept, never deleted
  assert any("3 damaged (rerun)" in l for l in lines) and sum("damaged cell " in l for l in lines) == 3
  lines.clear()
  assert compare_cli.main([*argv, "--dry_run"], echo=lines.append) == 0
  assert lines[-1] == "mtl-compare: 3 cells, 0 to run"


def test_train_on_a_garbage_run_spec_names_the_file(tmp_path):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  (model_dir / "run_spec.json").write_text("garbage{")
  got = run_main(*TINY_ARGS, ONE_DEVICE, f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=2", check=False)
  errors = [l for l in got.stderr.splitlines() if l.startswith("mtl-train: error:")]
  assert got.returncode == 2 and len(errors) == 1, got.stderr[-2000:]
  assert f"{model_dir / 'run_spec.json'} is damaged (not valid JSON" in errors[0] and "--gin.MODEL_DIR" in errors[0]
  assert sorted(p.name for p in model_dir.iterdir()) == ["run_spec.json"]  # nothing else written


# --- 4. a copied or moved experiment reruns nothing ------------------------------------------------------------

@pytest.mark.parametrize("tool", ["compare", "transfer"])
def test_a_moved_experiment_reruns_nothing(tmp_path, tool):
  main, argv = (compare_cli.main, COMPARE) if tool == "compare" else (transfer_cli.main, TRANSFER)
  calls, lines = [], []
  assert main([*argv, f"--exp_dir={tmp_path / 'exp'}"], launcher=fake_launcher(calls), echo=lines.append) == 0
  assert len(calls) == 3
  shutil.move(tmp_path / "exp", tmp_path / "moved")
  calls.clear()
  assert main([*argv, f"--exp_dir={tmp_path / 'moved'}"], launcher=fake_launcher(calls), echo=lines.append) == 0
  assert calls == []
  lines.clear()
  assert main([*argv, f"--exp_dir={tmp_path / 'moved'}", "--dry_run"], echo=lines.append) == 0
  assert lines[-1].startswith(f"mtl-{tool}: 3 cells, 0 to run"), lines


# --- 2 and 5: real runner processes (the process boundary is the point), a fake trainer --------------------

FAKE_TRAINER = r'''
import os, pathlib, signal, sys, time
sys.path.insert(0, os.environ["FAKE_HELPER_DIR"])
from mtl_jax.run import lock
from test_compare_fakes import write_cell
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
model_dir = pathlib.Path(args["gin.MODEL_DIR"]).absolute()
try:
  lock._acquire(model_dir)  # what trainer.train's lock.hold does first (without importing JAX)
except lock.LockedError as e:
  print(f"mtl-train: error: {e}", file=sys.stderr)
  sys.exit(2)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
steps, saved = int(args["gin.TRAIN_STEPS"]), model_dir / "fake_step"
start = int(saved.read_text()) if saved.exists() else 0
with open(os.environ["FAKE_COUNTER"], "a") as f:
  f.write(f"{model_dir.name} {start} {os.getpid()}\n")
for step in range(start + 1, steps + 1):
  time.sleep(float(os.environ.get("FAKE_STEP_S", "0.05")))
  saved.write_text(str(step))
  if stop:  # as the trainer on SIGTERM: save and exit 0
    lock.release_all()
    sys.exit(0)
write_cell(model_dir, "hard", args["gin.MIXTURE_OR_TASK_NAME"], int(args["gin.trainer.train.seed"]), steps)
lock.release_all()
'''


def _grid_process(tmp_path, exp_dir, *extra, **env):
  script = tmp_path / "fake_trainer.py"
  script.write_text(FAKE_TRAINER)
  argv = [sys.executable, "-m", "mtl_jax.compare", *COMPARE, f"--exp_dir={exp_dir}",
          f"--gin.experiment.binary={[sys.executable, str(script)]!r}", *extra]
  return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=subprocess_env(FAKE_HELPER_DIR=str(HERE), FAKE_COUNTER=str(tmp_path / "launches.txt"),
                                             **env))


def _launches(tmp_path) -> list[list[str]]:
  path = tmp_path / "launches.txt"
  return [l.split() for l in path.read_text().splitlines()] if path.exists() else []


def test_two_grids_at_once_launch_each_cell_once_and_none_fails(tmp_path):
  exp_dir = tmp_path / "exp"
  first = _grid_process(tmp_path, exp_dir, FAKE_STEP_S="0.1")
  second = _grid_process(tmp_path, exp_dir, FAKE_STEP_S="0.1")
  out = [p.communicate(timeout=300)[0] for p in (first, second)]
  assert {first.returncode, second.returncode} <= {0, 1}, out  # 1: it left a cell the other was still running
  names = [name for name, _, _ in _launches(tmp_path)]
  assert sorted(names) == sorted(p.name for p in (exp_dir / "runs").iterdir()) and len(names) == 3  # once each
  assert not any(" failed " in line for text in out for line in text.splitlines()), out
  for model_dir in (exp_dir / "runs").iterdir():
    assert len(json.loads((model_dir / runner.RUN_RECORD).read_text())["attempts"]) == 1
  lines = []
  assert compare_cli.main([*COMPARE, f"--exp_dir={exp_dir}", "--dry_run"], echo=lines.append) == 0
  assert lines[-1] == "mtl-compare: 3 cells, 0 to run"


def test_wait_runs_a_cell_once_the_trainer_holding_it_is_gone(tmp_path):
  from mtl_jax.compare import grid
  from mtl_jax.run import lock
  cells = grid.Experiment(gin_files=["gin/base.gin"], mixtures=["mixA"], baselines=False,
                          bindings={"TRAIN_STEPS": 10}).cells()
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  model_dir = runner.cell_dir(tmp_path, cells[0])
  model_dir.mkdir(parents=True)
  (model_dir / lock.FILENAME).write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid,
                                                     "started": lock._start_time(holder.pid), "token": "theirs"}))
  calls, lines = [], []
  unheld = lambda: (time.sleep(0.5), holder.kill(), holder.wait())
  import threading
  threading.Thread(target=unheld, daemon=True).start()
  outcomes = runner.run_cells(cells, tmp_path, ["mtl-train"], launcher=fake_launcher(calls), echo=lines.append,
                              wait=True, poll_s=0.05)
  assert [o.status for o in outcomes] == ["ran"] and calls == [str(model_dir)]
  assert any("running elsewhere, skipped for now" in l for l in lines)


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
  return state != "Z"


def test_sigterm_to_the_grid_stops_its_cells_records_them_and_a_rerun_resumes(tmp_path):
  exp_dir = tmp_path / "exp"
  grid = _grid_process(tmp_path, exp_dir, FAKE_STEP_S="0.2")
  deadline = time.time() + 120
  while not _launches(tmp_path) and time.time() < deadline:
    time.sleep(0.1)
  name, _, pid = _launches(tmp_path)[0]
  saved = exp_dir / "runs" / name / "fake_step"
  while not saved.exists() and time.time() < deadline:
    time.sleep(0.05)
  grid.send_signal(signal.SIGTERM)
  out = grid.communicate(timeout=120)[0]
  assert grid.returncode == 128 + signal.SIGTERM, out
  assert not _alive(int(pid))  # no trainer left running unsupervised
  assert "SIGTERM: running cells were told to save a checkpoint" in out
  step = int(saved.read_text())
  assert 0 < step < 10
  attempts = json.loads((exp_dir / "runs" / name / runner.RUN_RECORD).read_text())["attempts"]
  assert [a["returncode"] for a in attempts] == [0] and attempts[0]["wall_s"] > 0
  assert len(_launches(tmp_path)) == 1  # nothing new started after the signal
  rerun = _grid_process(tmp_path, exp_dir)
  out = rerun.communicate(timeout=300)[0]
  assert rerun.returncode == 0, out
  launches = _launches(tmp_path)
  assert launches[1][:2] == [name, str(step)]  # resumed where it saved
  assert sorted(l[0] for l in launches[1:]) == sorted(p.name for p in (exp_dir / "runs").iterdir())


# --- the real trainer end to end (matrix: each > 20 CPU-s) ------------------------------------------------------

def _in_process(argv, log_path, env):
  from conftest import run_cell_in_process
  return run_cell_in_process(argv)


@pytest.mark.matrix
def test_a_source_killed_right_after_its_final_results_gives_the_uninterrupted_matrix(tmp_path):
  """kill -9 of the source the moment its final results.json exists (faults kill_after_results): its targets
  must start from its final checkpoint (step 4), never an older one, and the matrix equal the clean grid's."""
  def matrix_of(exp_dir):
    return json.loads((exp_dir / "transfer_matrix.json").read_text())["matrix"]

  clean = tmp_path / "clean"
  assert transfer_cli.main([*TRANSFER, f"--exp_dir={clean}"], launcher=_in_process, echo=lambda _: None) == 0
  killed, kills = tmp_path / "killed", []

  def launch(argv, log_path, env):
    if "source__" in str(log_path) and not kills:  # the source as a real child on this process's 8 devices
      kills.append(1)
      child_env = subprocess_env(8, MTL_JAX_FAULTS="kill_after_results@4", **{
          k: v for k, v in env.items() if k == "MTL_JAX_LOCK_TOKEN"})
      return runner.subprocess_launcher([*argv, ONE_DEVICE], log_path, child_env)
    return _in_process(argv, log_path, env)
  lines = []
  for _ in range(2):  # the killed grid, then the same command again
    transfer_cli.main([*TRANSFER, f"--exp_dir={killed}"], launcher=launch, echo=lines.append)
  assert kills and any("failed source__vader_movie__seed0" in l for l in lines), lines
  spec = json.loads((killed / "runs" / "target__vader_movie__to__bbc_topic__n64__seed0" / "run_spec.json").read_text())
  assert spec["init_from"]["step"] == 4  # the source's final checkpoint, not step 2
  assert matrix_of(killed) == matrix_of(clean)


@pytest.mark.matrix
def test_sigterm_to_a_real_grid_leaves_no_trainer_and_the_rerun_equals_an_uninterrupted_run(tmp_path):
  bindings = [a.replace("--gin.", "--binding=", 1) for a in TINY_ARGS if a.startswith("--gin.")]
  argv = ["--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin", "--strategies=hard",
          "--mixtures=rotten_tomatoes", "--seeds=0", "--no_baselines", *bindings, "--binding=TRAIN_STEPS=12",
          "--binding=trainer.train.eval_period=6", "--binding=trainer.train.checkpoint_period=4",
          f"--exp_dir={tmp_path / 'exp'}"]
  grid = subprocess.Popen([sys.executable, "-m", "mtl_jax.compare", *argv], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=subprocess_env(MTL_JAX_FAULTS="slow_steps@1"))
  model_dir = tmp_path / "exp" / "runs" / "hard__rotten_tomatoes__seed0"
  deadline, pid = time.time() + 300, None
  while time.time() < deadline and not (model_dir / "checkpoints" / "4").is_dir():
    owner = finished.read_json(model_dir / "trainer.lock")[0] or {}
    pid = owner.get("pid", pid) if owner.get("pid") != grid.pid else pid
    time.sleep(0.1)
  assert pid is not None
  grid.send_signal(signal.SIGTERM)
  out = grid.communicate(timeout=300)[0]
  assert grid.returncode == 128 + signal.SIGTERM, out
  assert not _alive(pid), out  # its trainer saved and exited with it
  attempts = json.loads((model_dir / runner.RUN_RECORD).read_text())["attempts"]
  assert [a["returncode"] for a in attempts] == [0], out
  assert "SIGTERM received: saved a checkpoint" in (model_dir / runner.LOG_FILE).read_text()
  assert not (model_dir / "results.json").exists() or json.loads((model_dir / "results.json").read_text())["step"] < 12
  lines = []
  assert compare_cli.main(argv, env=subprocess_env(), echo=lines.append) == 0, lines
  assert "mtl_jax: resuming from checkpoint" in (model_dir / runner.LOG_FILE).read_text()
  reference = tmp_path / "reference"
  args = json.loads((model_dir / runner.RUN_RECORD).read_text())["args"]
  from conftest import run_binary
  run_binary(*[a.replace(str(model_dir), str(reference)) for a in args])
  assert json.loads((reference / "results.json").read_text()) == json.loads((model_dir / "results.json").read_text())
