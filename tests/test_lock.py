"""One trainer per MODEL_DIR (mtl_jax/run/lock.py): refuse a live owner, take over a stale one,
and mtl-compare skips cells whose MODEL_DIR is held. In-process: no training."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from mtl_jax.run import lock


@pytest.fixture
def sleeper():
  proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  yield proc
  proc.kill()
  proc.wait()


def _write_lock(model_dir, host, pid, age_s=0.0):
  model_dir.mkdir(parents=True, exist_ok=True)
  path = model_dir / lock.FILENAME
  path.write_text(json.dumps({"host": host, "pid": pid, "started": lock._start_time(pid),
                              "since": "2024-01-01T00:00:00", "token": "theirs"}))
  os.utime(path, (time.time() - age_s, time.time() - age_s))
  return path


def test_hold_creates_dir_and_release_removes_lock(tmp_path):
  model_dir = tmp_path / "run"
  lock.hold(model_dir)
  record = json.loads((model_dir / lock.FILENAME).read_text())
  assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
  lock.hold(model_dir)  # an in-process rerun re-takes its own lock
  lock.release_all()
  assert not (model_dir / lock.FILENAME).exists()


def test_live_owner_on_this_host_is_refused_naming_it(tmp_path, sleeper):
  path = _write_lock(tmp_path, socket.gethostname(), sleeper.pid)
  with pytest.raises(lock.LockedError) as e:
    lock.hold(tmp_path)
  message = str(e.value)
  assert "\n" not in message and f"pid {sleeper.pid}" in message and socket.gethostname() in message
  assert "since 2024-01-01T00:00:00" in message and "another --gin.MODEL_DIR" in message
  assert json.loads(path.read_text())["token"] == "theirs"  # left alone


def test_dead_owner_on_this_host_is_taken_over_with_a_warning(tmp_path, capsys):
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()  # a pid that is surely gone
  _write_lock(tmp_path, socket.gethostname(), proc.pid)
  lock.hold(tmp_path)
  assert f"taking over the stale lock of host {socket.gethostname()} pid {proc.pid}" in capsys.readouterr().out
  assert json.loads((tmp_path / lock.FILENAME).read_text())["pid"] == os.getpid()
  lock.release_all()


def test_other_host_is_judged_by_its_heartbeat(tmp_path, clean_gin, capsys):
  _write_lock(tmp_path, "elsewhere", 1, age_s=10)
  with pytest.raises(lock.LockedError, match="host elsewhere pid 1"):
    lock.hold(tmp_path)
  import gin
  gin.bind_parameter("lock.stale_after_s", 5.0)
  gin.bind_parameter("lock.heartbeat_s", 1.0)
  lock.hold(tmp_path)
  assert "no heartbeat for 10s (> lock.stale_after_s=5)" in capsys.readouterr().out
  lock.release_all()


def test_bad_lock_settings_name_the_fix(clean_gin):
  import gin
  gin.bind_parameter("lock.heartbeat_s", 0)
  with pytest.raises(ValueError, match="0 < heartbeat_s < stale_after_s"):
    lock.settings()


def test_compare_skips_a_cell_held_by_a_live_trainer(tmp_path, sleeper):
  from mtl_jax.compare import grid, runner
  cells = grid.Experiment(gin_files=["gin/runs/quickstart.gin"], mixtures=["mixA"], baselines=False,
                          tasks={"mixA": ["taskA", "taskB"]}, bindings={"TRAIN_STEPS": 10}).cells()
  _write_lock(runner.cell_dir(tmp_path, cells[0]), socket.gethostname(), sleeper.pid)
  launched, lines = [], []
  outcomes = runner.run_cells(cells, tmp_path, ["mtl-train"], launcher=lambda *a: launched.append(a) or 0,
                              echo=lines.append)
  assert not launched and [o.status for o in outcomes] == ["running"]
  assert f"pid {sleeper.pid}" in outcomes[0].error and any("running elsewhere" in l for l in lines)


def test_multi_host_processes_agree_with_process_0(tmp_path, monkeypatch):
  """Process 1 never touches the lock; it fails when process 0 could not take it."""
  import jax
  import numpy as np
  from jax.experimental import multihost_utils
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(multihost_utils, "process_allgather", lambda ok: np.array([False, bool(ok)]))
  with pytest.raises(lock.LockedError, match="process 0 says who"):
    lock.hold(tmp_path / "run")
  assert not (tmp_path / "run" / lock.FILENAME).exists()
  monkeypatch.setattr(multihost_utils, "process_allgather", lambda ok: np.array([True, bool(ok)]))
  assert lock.hold(tmp_path / "run") == tmp_path / "run" and not (tmp_path / "run" / lock.FILENAME).exists()
