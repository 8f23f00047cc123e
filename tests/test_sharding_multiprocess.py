"""Two processes on localhost (jax.distributed, CPU collectives over gloo), 4 CPU
devices each, train the tiny model on one global (4, 2) mesh: each process feeds
only its half of the batch rows. The losses, the eval-path predictions (every process
holds the whole eval batch) and the collectively written orbax checkpoint match one
process with 8 devices; that checkpoint restores in one process onto a (2, 4) mesh.

The workers are this file run as a script: `python test_sharding_multiprocess.py
PROCESS_ID PORT OUT_DIR`.
"""

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
MESH, RESTORE_MESH, NUM_STEPS = (4, 2), (2, 4), 10
# XLA:CPU flags that make the workers' tiny programs compile ~4x faster (test speed only)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def build(shape):
  from mtl_jax.scale import partitioning
  from test_sharding_equivalence import build as build_steps
  return build_steps("hard", partitioning.make_mesh(shape))


def worker(process_id: int, port: int, out: pathlib.Path) -> None:
  from mtl_jax.scale import distributed
  distributed.initialize(distributed.DistributedConfig("on", f"localhost:{port}", 2, process_id))
  import jax
  from jax.experimental import multihost_utils
  from helpers import fixed_batch
  from mtl_jax.run.checkpoints import Checkpoints
  assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (2, 8, 4)
  from mtl_jax.scale import partitioning
  try:  # 'model' across the two hosts: each process's rows would land on the other's devices
    partitioning.make_mesh((1, 8))
    raise AssertionError("make_mesh((1, 8)) over 2 processes should be refused")
  except ValueError as e:
    assert "'data' row" in str(e)
  steps = build(MESH)
  batch = fixed_batch()
  rows = 16 // jax.process_count()
  mine = {k: v[process_id * rows:(process_id + 1) * rows] for k, v in batch.items()}
  state = steps.init_state()
  losses = []
  for _ in range(NUM_STEPS):
    state, metrics = steps.run_train_step(state, mine)
    losses.append(float(metrics["loss"]))  # replicated: readable on every process
  predictions = steps.run_predict(state.params, batch)  # the whole (eval) batch on each process
  ckpt = Checkpoints(out / "model", keep=1, period=NUM_STEPS)
  ckpt.save(NUM_STEPS, state, {"batches_consumed": NUM_STEPS})
  ckpt.close()
  multihost_utils.sync_global_devices("saved")
  np.savez(out / f"worker{process_id}.npz", losses=np.array(losses),
           **{f"pred_{k}": np.asarray(v) for k, v in predictions.items()})


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_two_processes_match_one_process_and_checkpoint_restores_elsewhere(tmp_path):
  port = free_port()
  from conftest import subprocess_env  # local: this file also runs as the child script
  env = subprocess_env(devices=4, PYTHONPATH=os.pathsep.join(
      [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
  procs = [subprocess.Popen([sys.executable, __file__, str(i), str(port), str(tmp_path)], env=env, cwd=HERE.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=240)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-4000:]

  # the same on ONE process with 8 devices (this pytest process)
  import jax
  from helpers import fixed_batch
  from mtl_jax.run.checkpoints import Checkpoints
  from test_sharding_equivalence import assert_params_close
  steps = build(MESH)
  state = steps.init_state()
  batch = fixed_batch()
  ref = []
  for _ in range(NUM_STEPS):
    state, metrics = steps.run_train_step(state, batch)
    ref.append(float(metrics["loss"]))
  ref_pred = steps.run_predict(state.params, batch)
  for i in range(2):
    got = np.load(tmp_path / f"worker{i}.npz")
    np.testing.assert_allclose(got["losses"], ref, rtol=2e-4, atol=2e-5)
    for k, v in ref_pred.items():
      np.testing.assert_allclose(got[f"pred_{k}"], v, rtol=1e-4, atol=1e-5)

  # the two-process checkpoint restores in one process onto another mesh shape
  other = build(RESTORE_MESH)
  ckpt = Checkpoints(tmp_path / "model", keep=1, period=NUM_STEPS)
  assert ckpt.latest_step() == NUM_STEPS
  restored, meta = ckpt.restore(NUM_STEPS, other.abstract_state)
  ckpt.close()
  assert meta["batches_consumed"] == NUM_STEPS and int(restored.step) == NUM_STEPS
  emb = restored.params["embedder"]["token"]["embedding"]
  assert emb.sharding.mesh.shape == other.mesh.shape
  assert {s.data.shape for s in emb.addressable_shards} == {(64 // RESTORE_MESH[1], 32)}
  assert_params_close(restored.params, state.params)
  assert_params_close(restored.opt_state, state.opt_state)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  sys.path.insert(0, str(HERE))
  worker(int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3]))
