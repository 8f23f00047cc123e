"""Caches shared by the cells of a grid (issue #29 item 3): tokenized examples and compiled programs.

The cached stream is checked against the uncached one (the pipeline without any cache dir), batch by
batch and byte by byte; invalidation against the data actually changing; the compile cache against
jax writing the program where the grid cache points.
"""

import os
import threading

import numpy as np
import pytest

from mtl_jax.data.word_vocab import WordVocabulary
from mtl_jax.input import example_cache
from mtl_jax.input import input_pipeline as ip
from mtl_jax.run import grid_cache
from tasks import registration

VOCAB = WordVocabulary(120)


def _register(name, offset=0, n=24, kind="classification"):
  def examples(split, offset=offset, n=n):
    return [{"text": f"w{(i + offset) % 100} w{(3 * i) % 100} w{i % 7}", "label": i % 2} for i in range(n)]
  registration.add_task(name, kind=kind, vocabulary=VOCAB, label_names=("a", "b"), examples_fn=examples)
  return ip.get_provider(name)


def _stream(provider, n=6):
  """Train batches (seeded per-epoch shuffles over the cached split: 6 batches of 8 = 2 epochs of 24)
  and the validation batches, through the whole input pipeline."""
  it = ip.train_batches(provider, {"inputs": 6}, 8, seed=3)
  train = [next(it) for _ in range(n)]
  evals = ip.eval_batches(provider, ip.task_names(provider), {"inputs": 6}, 8)
  return train + evals


def _rows(provider, split="train"):
  """The task's tokenized split, shuffled (what the pipeline reads), as rows: cheaper than batches."""
  task = provider
  return list(task.source.get_dataset(split, shuffle=True, seed=3).take(60).as_numpy_iterator())


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert sorted(x) == sorted(y)
    for k in x:
      assert np.asarray(x[k]).dtype == np.asarray(y[k]).dtype, k
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
  monkeypatch.setenv(grid_cache.ENV, str(tmp_path / "grid"))
  return tmp_path / "grid"


def test_cached_batches_equal_uncached(tmp_path, monkeypatch):
  provider = _register("gridcache_a")
  monkeypatch.delenv(grid_cache.ENV, raising=False)
  plain = _stream(provider)
  assert not (tmp_path / "grid").exists()
  monkeypatch.setenv(grid_cache.ENV, str(tmp_path / "grid"))
  first = _stream(provider)  # tokenizes and writes
  files = sorted(p.name for p in (tmp_path / "grid" / "examples").iterdir())
  assert [f.split(".")[:2] for f in files] == [["gridcache_a", "train"], ["gridcache_a", "validation"]]
  second = _stream(provider)  # reads
  _assert_same(plain, first)
  _assert_same(plain, second)


def test_a_hit_never_tokenizes(cache_env, monkeypatch):
  provider = _register("gridcache_hit")
  first = _rows(provider)
  calls = []
  real = example_cache._arrays
  monkeypatch.setattr(example_cache, "_arrays", lambda *a: calls.append(1) or real(*a))
  _assert_same(_rows(provider), first)
  assert calls == []


def test_changed_data_is_another_entry(cache_env, monkeypatch):
  """The data fingerprint is part of the key: new examples are tokenized afresh, never read stale."""
  _rows(_register("gridcache_b", offset=0))
  changed = _register("gridcache_b", offset=5)
  cached = _rows(changed)
  assert len(list((cache_env / "examples").glob("gridcache_b.train.*.npz"))) == 2
  monkeypatch.delenv(grid_cache.ENV)
  _assert_same(_rows(changed), cached)


def test_vocabulary_is_part_of_the_key():
  assert (example_cache.vocabulary_fingerprint(WordVocabulary(120))
          == example_cache.vocabulary_fingerprint(WordVocabulary(120)))
  assert (example_cache.vocabulary_fingerprint(WordVocabulary(120))
          != example_cache.vocabulary_fingerprint(WordVocabulary(121)))


def test_unwritable_cache_dir_warns_once_and_runs(tmp_path, monkeypatch, capsys):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  monkeypatch.setenv(grid_cache.ENV, str(blocker / "grid"))  # mkdir fails even for root
  monkeypatch.setattr(grid_cache, "_WARNED", set())
  provider = _register("gridcache_c")
  got = _rows(provider) + _rows(provider, "validation")
  lines = [l for l in capsys.readouterr().out.splitlines() if "not writable" in l]
  assert len(lines) == 1 and str(blocker / "grid" / "examples") in lines[0]
  monkeypatch.delenv(grid_cache.ENV)
  _assert_same(_rows(provider) + _rows(provider, "validation"), got)


def test_truncated_file_is_rebuilt(cache_env):
  provider = _register("gridcache_d")
  good = _rows(provider)
  path = next((cache_env / "examples").glob("gridcache_d.train.*.npz"))
  path.write_bytes(path.read_bytes()[:100])  # a file cut short (not something our writer leaves)
  _assert_same(_rows(provider), good)
  assert example_cache._read(path) is not None  # rewritten whole


def test_racing_writers_never_expose_a_partial_file(tmp_path):
  """Writers rename whole temporary files over the target; a concurrent reader sees all or nothing."""
  spec = {"inputs": ["int32", [None]], "label": ["int32", []]}
  arrays = {"inputs.values": np.arange(400_000, dtype=np.int32), "inputs.lengths": np.full(1000, 400, np.int64),
            "label.values": np.arange(1000, dtype=np.int32)}
  path = tmp_path / "t.train.k.npz"
  seen, stop = [], threading.Event()

  def read():
    while not stop.is_set():
      found = example_cache._read(path)
      if found is not None:
        seen.append(all(np.array_equal(found[0][k], v) for k, v in arrays.items()))

  reader = threading.Thread(target=read)
  reader.start()
  writers = [threading.Thread(target=example_cache._write, args=(path, arrays, spec)) for _ in range(4)]
  for w in writers:
    w.start()
  for w in writers:
    w.join()
  stop.set()
  reader.join()
  assert all(seen)
  assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
  assert example_cache._read(path)[1] == spec


def test_compile_cache_writes_under_the_grid_dir(cache_env, monkeypatch):
  import gin
  import jax
  import jax.numpy as jnp
  from jax.experimental.compilation_cache import compilation_cache
  from mtl_jax.run import compile_cache

  before = {k: getattr(jax.config, k) for k in ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                                                "jax_persistent_cache_min_entry_size_bytes",
                                                "jax_compilation_cache_max_size",
                                                "jax_persistent_cache_enable_xla_caches")}
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    with gin.unlock_config():
      gin.bind_parameter("compile_cache.settings.min_compile_time_secs", 0.0)
    assert compile_cache.enable() == str(cache_env / "xla")
    jax.jit(lambda x: jnp.sin(x) * 3.0 + 41.0)(jnp.arange(7.0)).block_until_ready()
    assert any(p.name.endswith("-cache") for p in (cache_env / "xla").iterdir())
    assert (cache_env / "xla" / ".lockfile").exists()  # size-limited: reads and writes under jax's file lock
    assert compile_cache.enable() == str(cache_env / "xla")  # a configured directory is kept
  finally:
    gin.clear_config()
    for k, v in before.items():
      jax.config.update(k, v)
    compilation_cache.reset_cache()


_COMPILE_ONE = """
import gin, jax, jax.numpy as jnp
from mtl_jax.run import compile_cache
gin.bind_parameter("compile_cache.settings.min_compile_time_secs", 0.0)
assert compile_cache.enable()
jax.jit(lambda x: jnp.sin(x) @ x.T + 1.0)(jnp.ones((64, 64))).block_until_ready()
"""


def _programs(path) -> set:
  return {p.name for p in path.iterdir() if p.name.endswith("-cache")}


def test_a_copied_compile_cache_still_hits(tmp_path):
  """Another EXP_DIR (a copied experiment, a re-mounted cache) reads the same programs: no new entries."""
  import shutil
  import subprocess
  import sys
  from conftest import REPO, subprocess_env

  env = {k: v for k, v in subprocess_env().items() if not k.startswith("JAX_")}  # not the session's cache
  for root in ("first", "copy"):
    if root == "copy":
      shutil.copytree(tmp_path / "first", tmp_path / "copy")
    subprocess.run([sys.executable, "-c", _COMPILE_ONE], cwd=REPO, check=True, timeout=300,
                   env={**env, grid_cache.ENV: str(tmp_path / root)})
  first, copy = _programs(tmp_path / "first" / "xla"), _programs(tmp_path / "copy" / "xla")
  assert first and copy == first, f"the copy compiled again: {sorted(copy - first)}"


def test_compile_cache_off_without_a_grid_dir(monkeypatch):
  import jax
  from mtl_jax.run import compile_cache

  monkeypatch.delenv(grid_cache.ENV, raising=False)
  before = jax.config.jax_compilation_cache_dir
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    assert compile_cache.enable() is None
    assert not jax.config.jax_compilation_cache_dir
  finally:
    jax.config.update("jax_compilation_cache_dir", before)


def test_grid_runner_points_cells_at_the_experiment_cache(tmp_path, monkeypatch):
  from mtl_jax.compare import runner
  from mtl_jax.compare.grid import Cell

  monkeypatch.delenv(grid_cache.ENV, raising=False)
  seen = []

  def launcher(argv, log_path, env):
    seen.append(env.get(grid_cache.ENV))
    return 0

  cell = Cell(cell_id="a", kind="mtl", strategy="hard", mixture="m", seed=0, axes=(), gin_files=(), bindings=())
  runner.run_cells([cell], tmp_path / "exp", ["true"], env={}, launcher=launcher, echo=lambda s: None)
  assert seen == [str((tmp_path / "exp" / ".cache").absolute())]
  seen.clear()
  mine = str(tmp_path / "elsewhere")
  runner.run_cells([cell], tmp_path / "exp2", ["true"], env={grid_cache.ENV: mine}, launcher=launcher,
                   echo=lambda s: None)
  assert seen == [mine]  # a cache the user chose is kept


def test_seeds_in_one_step_launches_get_the_experiment_cache_too(tmp_path, monkeypatch):
  # the relatedness sweep runs 6 seeds per launch: its launches went without the grid caches once
  from mtl_jax.compare import seed_groups
  from mtl_jax.compare.grid import Cell

  monkeypatch.delenv(grid_cache.ENV, raising=False)
  seen = []

  def launcher(argv, log_path, env):
    seen.append(env.get(grid_cache.ENV))
    return 1  # the cells fail; only the environment of the launch matters here

  cells = [Cell(cell_id=f"hard__m__seed{s}", kind="mtl", strategy="hard", mixture="m", seed=s, axes=(), gin_files=(),
                bindings=()) for s in (0, 1)]
  seed_groups.run_cells(cells, tmp_path / "exp", ["true"], env={}, launcher=launcher, echo=lambda s: None,
                        seeds_per_step=2)
  assert seen == [str((tmp_path / "exp" / ".cache").absolute())]  # one launch for both seeds, with the cache
