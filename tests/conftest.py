"""Test setup: 8 fake CPU devices (sharding tests), quiet TF, a tiny offline task set.

XLA_FLAGS must be set before jax is imported anywhere in the process.
"""

import os
import subprocess
import sys
import pathlib

# Fast XLA:CPU compiles (3-4x less compile time; tests check numbers, not speed).
FAST_COMPILE_CANDIDATES = ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=0",
                           "--xla_llvm_disable_expensive_passes=true")


def _flag_ok(flags) -> bool:
  probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], capture_output=True,
                         env={**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"})
  return probe.returncode == 0


def _known_fast_compile_flags() -> str:
  """The candidates this jaxlib knows. XLA aborts the process on an unknown flag in XLA_FLAGS
  (jaxlib 0.12 dropped --xla_cpu_use_fusion_emitters), so probe once in a child process; the
  answer goes into the environment, which pytest-xdist workers and test subprocesses inherit."""
  cached = os.environ.get("MTL_JAX_TEST_FAST_COMPILE")
  if cached is None:
    ok = FAST_COMPILE_CANDIDATES if _flag_ok(FAST_COMPILE_CANDIDATES) else [
        f for f in FAST_COMPILE_CANDIDATES if _flag_ok([f])]
    cached = os.environ["MTL_JAX_TEST_FAST_COMPILE"] = " ".join(ok)
  return cached


FAST_COMPILE = _known_fast_compile_flags()
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 " + FAST_COMPILE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _share_compiled_programs() -> None:
  """One persistent XLA compilation cache for the whole test session: the many tests that build the same
  tiny model (in-process, in xdist workers and in binary subprocesses, which inherit the environment)
  compile each program once. A fresh directory per session (removed at exit) so a run never reads
  programs compiled by other code; an explicit JAX_COMPILATION_CACHE_DIR is respected."""
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return
  import atexit
  import shutil
  import tempfile
  path = tempfile.mkdtemp(prefix="mtl_jax_test_xla_cache_")
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  os.environ.update({"JAX_COMPILATION_CACHE_DIR": path, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                     "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})


_share_compiled_programs()

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def subprocess_env(devices: int = 1, **extra) -> dict:
  """The environment for a child process: `devices` CPU devices, fast compiles, + `extra`."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = FAST_COMPILE + (f" --xla_force_host_platform_device_count={devices}" if devices > 1 else "")
  env.update(extra)
  return env


def run_binary(*args, env_extra=None, timeout=600, check=True):
  """Runs `python -m mtl_jax.train ARGS` from the repo root on ONE CPU device."""
  env = subprocess_env(**(env_extra or {}))
  proc = subprocess.run([sys.executable, "-m", "mtl_jax.train", "--no_progress", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"binary failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
  return proc


def run_main(*args, check=True):
  """`train.main(ARGS)` in this process, stdout/stderr captured, with run_binary's result shape: no
  interpreter + TensorFlow start (~9 CPU-s) and the jit caches are shared. For tests where the process
  boundary is not what is tested. It runs on this process's 8 fake devices and a run_binary child on one:
  their results differ in the last bits, following the device count, not the process (measured: a child
  given the 8 devices and an in-process run end bit-identical; a (1, 1) mesh in-process still differs from
  a 1-device child). Compare bit for bit only runs on the same devices."""
  import contextlib
  import io
  import types
  from mtl_jax import train
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    rc = train.main(["--no_progress", *args])
  if check and rc != 0:
    raise AssertionError(f"train.main failed ({rc}):\n{out.getvalue()[-3000:]}\n{err.getvalue()[-5000:]}")
  return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


# Each split's first 64 validation / test examples (gin evaluation.max_examples): building and scoring the
# whole splits was ~25% of a warm tiny run's CPU (measured 6 Dec: 10.0 -> 7.4 CPU-s). Tests about the full
# splits' numbers say so with their own arguments.
EVAL_CAP = "--gin.evaluation.max_examples.value=64"
TINY_ARGS = ("--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
             "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}", "--gin.BATCH_SIZE=16", EVAL_CAP)

# An in-process run on ONE of this process's 8 fake devices, as a user's single-device run: a warm tiny run
# costs ~30% less CPU than on the default 8-device mesh (measured: 4.5 vs 6.7 CPU-s). Runs whose point is
# the data-parallel mesh, or that are compared bit for bit with an 8-device child, leave it out.
ONE_DEVICE = "--gin.make_mesh.mesh_shape=(1, 1)"


def run_cell_in_process(argv) -> int:
  """A grid cell's `python -m mtl_jax.train ARGS` (what mtl-compare / mtl-transfer launch) as the binary's
  main() in this process, on ONE_DEVICE as a child cell would be: no interpreter + TensorFlow start."""
  assert list(argv[1:3]) == ["-m", "mtl_jax.train"], argv
  from mtl_jax import train
  return train.main([*argv[3:], ONE_DEVICE])


@pytest.fixture
def clean_gin():
  """A cleared gin config for the test, cleared again afterwards."""
  import gin
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.fixture
def tiny_args():
  return TINY_ARGS


# The modules that take longest (--durations, 2 Dec 2026), longest first. Under `pytest -n 2` each worker takes
# the next test when it is free, so running these first leaves short tests for the end instead of one worker
# finishing a minute-long module while the other idles (longest-first scheduling). Order only: every test runs.
LONGEST_FIRST = ("test_resilience", "test_many_tasks", "test_sharing_e2e", "test_pretrained_train",
                 "test_taskemb_affinity", "test_multihost", "test_transfer_init_from", "test_dynamic_mixing",
                 "test_train_binary", "test_transfer_grid", "test_weighting_resume", "test_sharding_equivalence",
                 "test_probe", "test_compare_real_e2e", "test_weighting_train", "test_bad_inputs")


def pytest_collection_modifyitems(config, items):
  del config
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))
