"""The train binary as a two-process (multi-host) run on localhost: jax.distributed
from the --coordinator_address/--num_processes/--process_id flags, 4 CPU devices per
process (CPU collectives: gloo), each process reading its own data shard. Only
process 0 writes summaries and results, both processes write the orbax checkpoint,
and a single process resumes from it.

Exact loss equality with one process is tested on the train step itself in
test_sharding_multiprocess.py: here each process reads a different seqio shard
(ShardInfo(process_index, 2)), so the global batches differ from a one-process run's
by design; this test checks the binary's multi-host plumbing.
"""

import json
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import ONE_DEVICE, REPO, TINY_ARGS, run_binary, run_main, subprocess_env
from mtl_jax.scale import distributed


# XLA:CPU flags that make these tiny programs compile ~4x faster (test speed only)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def read_scalars(event_dir, tag):
  import tensorflow as tf
  from tensorboard.backend.event_processing import event_accumulator as ea
  acc = ea.EventAccumulator(str(event_dir), size_guidance={ea.TENSORS: 0})
  acc.Reload()
  return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}


def test_distributed_flags():
  parse = lambda *argv, env=None: distributed.config_from_args(_parser().parse_args(list(argv)), env or {})
  assert parse() == distributed.DistributedConfig()  # off
  on = parse("--coordinator_address=h:1", "--num_processes=2", "--process_id=1")
  assert (on.mode, on.coordinator_address, on.num_processes, on.process_id) == ("on", "h:1", 2, 1)
  env = {"JAX_COORDINATOR_ADDRESS": "h0:9", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  from_env = parse("--distributed=on", env=env)
  assert (from_env.coordinator_address, from_env.num_processes, from_env.process_id) == ("h0:9", 4, 3)
  auto = parse("--distributed=auto")
  assert auto.mode == "auto" and auto.coordinator_address is None  # jax.distributed.initialize()
  assert parse("--distributed=auto", "--local_device_ids=0,1").local_device_ids == (0, 1)
  with pytest.raises(ValueError, match="needs --coordinator_address"):
    parse("--distributed=on")
  with pytest.raises(ValueError, match="process_id must be in"):
    parse("--coordinator_address=h:1", "--num_processes=2", "--process_id=2")
  with pytest.raises(ValueError, match="--distributed=off"):
    parse("--distributed=off", "--process_id=0")


def _parser():
  import argparse
  parser = argparse.ArgumentParser()
  distributed.add_flags(parser)
  return parser


def test_bad_distributed_flags_are_one_line_errors(tmp_path):
  # refused while parsing the flags, before jax.distributed is touched: in-process is safe here
  proc = run_main(*TINY_ARGS, f"--gin.MODEL_DIR={tmp_path / 'x'}", "--gin.TRAIN_STEPS=1", "--distributed=on",
                  check=False)
  assert proc.returncode == 2
  assert [l for l in proc.stderr.splitlines() if l.startswith("mtl-train: error:")] == [
      "mtl-train: error: --distributed=on needs --coordinator_address (or JAX_COORDINATOR_ADDRESS), "
      "--num_processes (or JAX_NUM_PROCESSES), --process_id (or JAX_PROCESS_ID); or use --distributed=auto "
      "on a TPU pod slice / SLURM / Open MPI cluster"]
  assert not (tmp_path / "x").exists()
  proc = run_binary(*TINY_ARGS, f"--gin.MODEL_DIR={tmp_path / 'x'}", "--gin.TRAIN_STEPS=1",
                    "--distributed=auto", check=False, timeout=120)  # a child: initialize() must not run in pytest
  assert proc.returncode == 2
  err = [l for l in proc.stderr.splitlines() if l.startswith("mtl-train: error:")]
  assert len(err) == 1 and "--distributed=auto could not join a cluster" in err[0]
  assert not (tmp_path / "x").exists()


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_two_process_binary_trains_writes_once_and_resumes_single_process(tmp_path):
  model_dir = tmp_path / "run"
  common = (*TINY_ARGS, f"--gin.MODEL_DIR={model_dir}", "--gin.trainer.train.log_period=1",
            "--gin.trainer.train.eval_period=2", "--gin.trainer.train.checkpoint_period=2")
  port = free_port()
  env = subprocess_env(devices=4)
  procs = [subprocess.Popen(
      [sys.executable, "-m", "mtl_jax.train", "--no_progress", *common, "--gin.TRAIN_STEPS=2",
       f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=400))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, f"{out[-3000:]}\n{err[-5000:]}"
  for i, (out, _) in enumerate(outs):
    assert f"mtl_jax: process {i}/2: 4 local of 8 cpu devices" in out
  # both processes evaluated the same global model on the same eval sets
  evals = [re.findall(r"step 2: eval average=(\S+)", out) for out, _ in outs]
  assert evals[0] and evals[0] == evals[1]

  # only process 0 wrote summaries and results; both wrote their checkpoint shards
  assert len(list((model_dir / "train").glob("events.out.tfevents.*"))) == 1
  assert len(list((model_dir / "eval").glob("events.out.tfevents.*"))) == 1
  results = json.loads((model_dir / "results.json").read_text())
  assert results["step"] == 2 and abs(results["average"] - float(evals[0][0])) < 1e-3
  assert len((model_dir / "eval_history.jsonl").read_text().splitlines()) == 1
  losses = read_scalars(model_dir / "train", "loss")
  assert sorted(losses) == [1, 2] and all(np.isfinite(v) for v in losses.values())
  state_dir = model_dir / "checkpoints" / "2" / "state"
  assert state_dir.is_dir()
  assert {p.name for p in state_dir.glob("ocdbt.process_*")} == {"ocdbt.process_0", "ocdbt.process_1"}

  # ... and one process on one device resumes from that checkpoint (main() in this process: no interpreter start)
  resumed = run_main(*common, "--gin.TRAIN_STEPS=3", "--gin.trainer.train.eval_period=3",
                     ONE_DEVICE)
  assert "resuming from checkpoint at step 2" in resumed.stdout
  assert json.loads((model_dir / "results.json").read_text())["step"] == 3
  assert sorted(read_scalars(model_dir / "train", "loss")) == [1, 2, 3]
