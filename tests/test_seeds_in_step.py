"""trainer.train.seeds: K seeds as one vmapped step equal K separate runs (run/seeds_in_step.py, step/seed_axis.py).

Default suite: the vmapped step against each seed's own Steps (a weighting method with state, so the state
carries the seeds axis too) and the refusals. Marked e2e: whole runs (results.json against separate runs,
a SIGTERM'd seeds run resumed, lanes resuming from different steps)."""

import dataclasses
import json
import pathlib

import jax
import numpy as np
import optax
import pytest

from conftest import ONE_DEVICE, TINY_ARGS, run_main
from helpers import TINY, fixed_batch
from mtl_jax import weighting
from mtl_jax.models.multitask import build_model
from mtl_jax.run import seeds_in_step
from mtl_jax.scale import partitioning
from mtl_jax.step import seed_axis
from mtl_jax.step.steps import Steps

KINDS, CLASSES = ("classification", "regression", "classification"), (3, 1, 2)
SMALL = dataclasses.replace(TINY, num_layers=1, d_model=16, mlp_dim=32)  # one layer: a cheap compile


def make_steps(seed, sharing="hard", method="dwa", grouped=False, config=SMALL, batch_size=12, length=10,
               mesh_shape=(1, 1), microbatches=1):
  devices = jax.devices()[:mesh_shape[0] * mesh_shape[1]]
  mesh = partitioning.make_mesh(mesh_shape, devices=devices)
  # Adam with a large eps: a gradient that is 0 up to round-off (mixing weights, the key bias) is not scaled up
  # to +-lr (round-off differs between a vmapped and a plain step), so every parameter compares at 1e-5
  tx = optax.adam(3e-3, eps=1e-3)
  return Steps(build_model(config, sharing, CLASSES), tx, KINDS, mesh, partitioning.logical_axis_rules(),
               seed, batch_size, length, grouped=grouped, weighting=weighting.build(method, 3),
               microbatches=microbatches)


def seed_batches(seed, steps=2, batch_size=12, length=10, grouped=False):
  """Each seed's own stream of batches (as its input pipeline would give it a different order)."""
  out = []
  for i in range(steps):
    batch = fixed_batch(batch_size, length, seed=10 * seed + i)
    if grouped:
      order = np.argsort(batch["task_id"], kind="stable")
      batch = {k: v[order] for k, v in batch.items()}
    out.append(batch)
  return out


def assert_same_state(got, want, where, rtol=1e-5, atol=1e-5):
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(jax.device_get(got)),
                          jax.tree.leaves(jax.device_get(want))):
    name = jax.tree_util.keystr(path)
    if "['key_bias']" in name:  # softmax is shift-invariant: its gradient is 0 up to round-off, which Adam
      continue                  # scales to +-lr (as test_sharding_equivalence): not comparable
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                               err_msg=f"{where} {name}")


def check_seed_axis(seeds, **kw):
  """Two steps of `seeds` through one SeedAxisStep vs each seed's own Steps.train_step, same batches."""
  grouped = kw.get("grouped", False)
  own = [make_steps(s, **kw) for s in seeds]
  shared = seed_axis.SeedAxisStep(own[0])
  states = [s.init_state() for s in own]  # each seed's own init key
  refs = [s.init_state() for s in own]
  batches = [seed_batches(s, grouped=grouped) for s in seeds]
  for step in range(2):
    states, metrics = shared(states, [b[step] for b in batches], seeds)
    for i, s in enumerate(own):
      refs[i], ref_metrics = s.run_train_step(refs[i], batches[i][step])
      np.testing.assert_allclose(np.asarray(metrics[i]["task_loss"]), np.asarray(ref_metrics["task_loss"]),
                                 rtol=1e-5, atol=1e-6, err_msg=f"seed {seeds[i]} step {step}")
      np.testing.assert_allclose(float(metrics[i]["loss"]), float(ref_metrics["loss"]), rtol=1e-5, atol=1e-6)
  for i, s in enumerate(seeds):
    assert int(states[i].step) == 2
    assert_same_state(states[i], refs[i], f"seed {s}")
  return states


def test_one_vmapped_step_is_each_seeds_own_step_weighting_state_included():
  states = check_seed_axis([0, 3], method="dwa")
  # the seeds really differ (init key, dropout key, data): not one state copied K times
  a, b = (np.asarray(s.params["heads"]["kernel"] if "kernel" in s.params["heads"] else jax.tree.leaves(s.params)[0])
          for s in states)
  assert not np.allclose(a, b)
  assert jax.tree.leaves(states[0].weighting), "dwa keeps a loss history: it must ride the seeds axis"


def test_lane_model_dirs():
  assert seeds_in_step.lane_dir("/x/run__seed{seed}", 3) == pathlib.Path("/x/run__seed3")
  assert seeds_in_step.lane_dir("/x/run", 3) == pathlib.Path("/x/run/seed3")


@pytest.mark.parametrize("binding, named", [
    ("--gin.trainer.train.seeds=[0,1,0]", "has duplicates (0)"),
    ("--gin.trainer.train.seeds=[]", "non-empty list of ints >= 0, got []"),
    ("--gin.trainer.train.seeds=[0,-1]", "got [0, -1]"),
])
def test_bad_seeds_refused_in_one_line_before_anything_is_written(tmp_path, binding, named):
  model_dir = tmp_path / "run"
  out = run_main(*TINY_ARGS, ONE_DEVICE, f"--gin.MODEL_DIR={model_dir}", binding, check=False)
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and named in lines[0] and lines[0].startswith("mtl-train: error: train.seeds"), out.stderr
  assert not model_dir.exists()


def test_bad_lanes_refused_in_one_line(tmp_path):
  """lanes.* (several starting runs in one trainer) must give one entry per seed and distinct directories."""
  check = seeds_in_step._check_lanes
  with pytest.raises(ValueError, match=r"lanes.model_dirs=\['/a'\] must list one entry per train.seeds entry \(2"):
    check([0, 0], ["/a"], None)
  with pytest.raises(ValueError, match=r"lanes.model_dirs lists \['/a'\] more than once"):
    check([0, 1], ["/a", "/a"], ["/s0", "/s1"])
  with pytest.raises(ValueError, match="lanes.init_from is set without lanes.model_dirs"):
    check([0, 1], None, ["/s0", "/s1"])
  check([0, 0], ["/a", "/b"], ["/s0", "/s1"])  # a repeated seed is fine across lanes of their own
  out = run_main(*TINY_ARGS, ONE_DEVICE, f"--gin.MODEL_DIR={tmp_path}/run", "--gin.trainer.train.seeds=[0,0]",
                 f"--gin.lanes.model_dirs=['{tmp_path}/a', '{tmp_path}/a']", check=False)
  assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
  assert "more than once; give each lane its own directory" in out.stderr
  assert not (tmp_path / "a").exists() and not (tmp_path / "run").exists()


def test_seed_and_seeds_together_refused(tmp_path):
  out = run_main(*TINY_ARGS, ONE_DEVICE, f"--gin.MODEL_DIR={tmp_path}/run", "--gin.trainer.train.seeds=[1,2]",
                 "--gin.trainer.train.seed=5", check=False)
  assert out.returncode == 2 and "train.seed=5 and train.seeds=[1, 2] are both set" in out.stderr
  assert not (tmp_path / "run").exists()


def test_init_from_template_is_each_seeds_own_source(tmp_path, clean_gin):
  """init_from.model_dir = '.../src__seed{seed}': the run with seed S starts from src__seedS (how mtl-transfer
  groups a target's seeds); without a seed to fill in, one line."""
  import gin
  from mtl_jax.run import starting_point
  for s in (0, 1):
    (tmp_path / f"src__seed{s}").mkdir()
    (tmp_path / f"src__seed{s}" / "run_spec.json").write_text(json.dumps({"pretrained": None}))
  gin.parse_config([f"init_from.model_dir = '{tmp_path}/src__seed{{seed}}'"])
  for s in (0, 1):
    assert starting_point.for_run(s).model_dir == tmp_path / f"src__seed{s}"
  with pytest.raises(ValueError, match=r"holds '\{seed\}' but this command has no seed to fill in"):
    starting_point.for_run()


# ---- whole runs (e2e) ------------------------------------------------------------------------------------
RUN = (*TINY_ARGS, ONE_DEVICE, "--gin.TRAIN_STEPS=4", "--gin.trainer.train.eval_period=2",
       "--gin.trainer.train.checkpoint_period=2")
SEEDS = (0, 1)


def numbers(record, prefix=""):
  """Every number in a results.json record, by its path."""
  out = {}
  for key, value in record.items():
    if isinstance(value, dict):
      out.update(numbers(value, f"{prefix}{key}/"))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      out[prefix + key] = value
  return out


def assert_same_results(got_dir, want_dir, atol=1e-5):
  got, want = (json.loads((pathlib.Path(d) / "results.json").read_text()) for d in (got_dir, want_dir))
  assert got["step"] == want["step"] and got["selected_step"] == want["selected_step"], (got, want)
  a, b = numbers(got), numbers(want)
  assert a.keys() == b.keys() and len(a) > 10
  for key in a:
    np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=atol, err_msg=key)


@pytest.fixture(scope="module")
def separate_runs(tmp_path_factory):
  """Each seed as its own run (the reference)."""
  root = tmp_path_factory.mktemp("separate")
  for s in SEEDS:
    run_main(*RUN, f"--gin.MODEL_DIR={root}/seed{s}", f"--gin.trainer.train.seed={s}")
  return root


@pytest.mark.e2e
def test_seeds_run_equals_separate_runs(tmp_path, separate_runs):
  import gin
  out = run_main(*RUN, f"--gin.MODEL_DIR={tmp_path}/cell__seed{{seed}}", f"--gin.trainer.train.seeds={list(SEEDS)}")
  for s in SEEDS:
    lane = tmp_path / f"cell__seed{s}"
    assert_same_results(lane, separate_runs / f"seed{s}")
    assert sorted(p.name for p in (lane / "checkpoints").iterdir()) == ["2", "4"]
    gin.clear_config()  # the lane's config.gin is the separate run's: seed S, its own MODEL_DIR, no seeds
    gin.parse_config_files_and_bindings([str(lane / "config.gin")], [], skip_unknown=True)
    assert gin.query_parameter("trainer.train.seed") == s and gin.query_parameter("trainer.train.seeds") is None
    assert gin.query_parameter("%MODEL_DIR") == str(lane)
  gin.clear_config()
  assert out.stdout.count("step 4: eval average=") == len(SEEDS)


@pytest.mark.e2e
def test_seeds_run_resumes_exactly(tmp_path, separate_runs, monkeypatch):
  """SIGTERM during the first eval: every lane saves at the same step and exits 0; lane 1's newest checkpoint
  is then lost, so the rerun resumes the lanes from different steps (3 and 2); both end as their separate run."""
  args = (*RUN, f"--gin.MODEL_DIR={tmp_path}/seed{{seed}}", f"--gin.trainer.train.seeds={list(SEEDS)}")
  monkeypatch.setenv("MTL_JAX_FAULTS", "sigterm_eval@1")
  out = run_main(*args)
  assert out.stdout.count("SIGTERM received: saved a checkpoint at step 3") == len(SEEDS), out.stdout
  for s in SEEDS:
    assert json.loads((tmp_path / f"seed{s}" / "results.json").read_text())["step"] == 2  # the last eval's
    assert sorted(p.name for p in (tmp_path / f"seed{s}" / "checkpoints").iterdir()) == ["2", "3"]
  import shutil
  shutil.rmtree(tmp_path / "seed1" / "checkpoints" / "3")
  monkeypatch.delenv("MTL_JAX_FAULTS")
  out = run_main(*args)
  assert "resuming from checkpoint at step 3" in out.stdout and "resuming from checkpoint at step 2" in out.stdout
  for s in SEEDS:
    assert_same_results(tmp_path / f"seed{s}", separate_runs / f"seed{s}")


@pytest.mark.e2e
def test_mtl_compare_seeds_per_step_cells_equal_separate_runs(tmp_path, separate_runs):
  """mtl-compare --seeds_per_step=2 launches the two seeds of the cell once; each cell is its separate run."""
  from conftest import run_cell_in_process
  from mtl_jax.compare import cli
  bindings = [a.replace("--gin.", "--binding=", 1) for a in RUN if a.startswith("--gin.") and a != ONE_DEVICE]
  argv = ["--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin", "--strategies=hard",
          "--mixtures=quickstart", f"--seeds={','.join(map(str, SEEDS))}", "--no_baselines", *bindings,
          "--seeds_per_step=2", f"--exp_dir={tmp_path}", "--name=seeds_e2e"]
  launched = []

  def launch(args, log_path, env):
    launched.append(args)
    return run_cell_in_process(args)

  assert cli.main(argv, launcher=launch, echo=lambda _: None) == 0
  assert len(launched) == 1 and launched[0][-1] == f"--gin.trainer.train.seeds={list(SEEDS)}"
  for s in SEEDS:
    assert_same_results(tmp_path / "runs" / f"hard__quickstart__seed{s}", separate_runs / f"seed{s}")
  cells = json.loads((tmp_path / "results.json").read_text())["cells"]
  assert [(c["seed"], c["status"]) for c in cells] == [(s, "done") for s in SEEDS]


def packed_seed_batches(seed, steps=2, length=10):
  """Each seed's packed rows: its fixed_batch examples grouped by task, packed (input/packing.py), 6 rows a step."""
  import tensorflow as tf
  from mtl_jax.input import packing
  out = []
  for i in range(steps):
    batch = fixed_batch(24, length, seed=10 * seed + i)
    batch["token_type_ids"] = np.zeros_like(batch["input_ids"])
    order = np.argsort(batch["task_id"], kind="stable")
    rows = packing.pack_examples(tf.data.Dataset.from_tensor_slices({k: v[order] for k, v in batch.items()}),
                                 length, max_segments=4, open_rows=1)
    rows = list(rows.as_numpy_iterator())[:6]
    out.append({k: np.stack([r[k] for r in rows]) for k in rows[0]})
  return out


def test_seeds_axis_takes_packed_rows():
  """A packed batch has keys an unpacked one lacks (segment_ids, positions, segment_weight): the vmapped step
  must take them as each seed's own Steps does."""
  seeds = [0, 2]
  own = [make_steps(s, batch_size=6) for s in seeds]
  shared = seed_axis.SeedAxisStep(own[0])
  states, refs = [s.init_state() for s in own], [s.init_state() for s in own]
  batches = [packed_seed_batches(s) for s in seeds]
  assert "segment_ids" in batches[0][0] and batches[0][0]["segment_ids"].max() > 1  # really packed
  for step in range(2):
    states, metrics = shared(states, [b[step] for b in batches], seeds)
    for i, s in enumerate(own):
      refs[i], want = s.run_train_step(refs[i], batches[i][step])
      np.testing.assert_allclose(np.asarray(metrics[i]["task_loss"]), np.asarray(want["task_loss"]),
                                 rtol=1e-5, atol=1e-6)
  for i, s in enumerate(seeds):
    assert_same_state(states[i], refs[i], f"seed {s}")


@pytest.mark.e2e
def test_seeds_run_from_each_seeds_own_source_equals_separate_runs(tmp_path, separate_runs):
  """A transfer target's seeds in one step, init_from.model_dir a '{seed}' template: each lane equals the
  separate run started from its own seed's source (the separate runs above serve as the sources)."""
  target = (*RUN, "--gin.MIXTURE_OR_TASK_NAME='vader_tweets'")
  for s in SEEDS:
    run_main(*target, f"--gin.MODEL_DIR={tmp_path}/alone{s}", f"--gin.trainer.train.seed={s}",
             f"--gin.init_from.model_dir={separate_runs}/seed{s}")
  run_main(*target, f"--gin.MODEL_DIR={tmp_path}/cell__seed{{seed}}", f"--gin.trainer.train.seeds={list(SEEDS)}",
           f"--gin.init_from.model_dir={separate_runs}/seed{{seed}}")
  for s in SEEDS:
    lane = tmp_path / f"cell__seed{s}"
    spec = json.loads((lane / "run_spec.json").read_text())
    assert spec["init_from"]["model_dir"] == str(separate_runs / f"seed{s}")
    # 4 steps from a source leave vader_tweets' predictions nearly tied: float noise of the vmapped step
    # (1e-7) reorders a few, which moves Spearman by ~3e-5; every other number agrees to 1e-5
    assert_same_results(lane, tmp_path / f"alone{s}", atol=1e-4)


@pytest.mark.e2e
def test_lanes_from_different_sources_equal_separate_runs(tmp_path, separate_runs):
  """mtl-transfer --sources_per_step: one trainer, lanes with the SAME seed started from DIFFERENT source runs
  (lanes.model_dirs / lanes.init_from); each lane equals the separate run from its own source, and its
  config.gin names that source (the separate runs above serve as two sources)."""
  target = (*RUN, "--gin.MIXTURE_OR_TASK_NAME='vader_tweets'", "--gin.trainer.train.seed=0")
  for s in SEEDS:
    run_main(*target, f"--gin.MODEL_DIR={tmp_path}/alone{s}", f"--gin.init_from.model_dir={separate_runs}/seed{s}")
  dirs = [str(tmp_path / f"from{s}") for s in SEEDS]
  run_main(*RUN, "--gin.MIXTURE_OR_TASK_NAME='vader_tweets'", f"--gin.MODEL_DIR={tmp_path}/unused",
           "--gin.trainer.train.seeds=[0, 0]", f"--gin.init_from.model_dir={separate_runs}/seed0",
           f"--gin.lanes.model_dirs={dirs}", f"--gin.lanes.init_from={[f'{separate_runs}/seed{s}' for s in SEEDS]}")
  for s in SEEDS:
    lane = tmp_path / f"from{s}"
    spec = json.loads((lane / "run_spec.json").read_text())
    assert spec["init_from"]["model_dir"] == str(separate_runs / f"seed{s}")
    assert f"init_from.model_dir = '{separate_runs}/seed{s}'" in (lane / "config.gin").read_text()
    assert_same_results(lane, tmp_path / f"alone{s}", atol=1e-4)
  assert not (tmp_path / "unused").exists()
