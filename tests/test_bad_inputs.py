"""Each bad configuration or data problem: one actionable error line, MODEL_DIR untouched.

Runs the binary's main() in-process (8 fake CPU devices from conftest) so the
cases cost no process start-up; every case fails before any training step.
"""

import json
import os
import pathlib

import pytest

import broken_tasks  # noqa: F401  registers broken_label / broken_nan / broken_empty
from mtl_jax import train
from tasks import offline, registration
from conftest import ONE_DEVICE

BASE = ["--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}", "--gin.BATCH_SIZE=16", "--gin.TRAIN_STEPS=2"]

CASES = {
    "unknown_task": (["--gin.MIXTURE_OR_TASK_NAME=bbc_topik"], "unknown task or mixture 'bbc_topik'. Did you mean 'bbc_topic'"),
    "unknown_strategy": (["--gin.trainer.train.sharing=sluise"], "unknown sharing strategy 'sluise'"),
    "gin_typo": (["--gin.trainer.train.eval_perod=5"], "trainer.train has no parameter 'eval_perod'; did you mean trainer.train.eval_period?"),
    "gin_unknown_configurable": (["--gin.trainr.train.seed=1"], "no configurable 'trainr.train'; did you mean trainer.train?"),
    "feature_length_zero": (["--gin.TASK_FEATURE_LENGTHS={'inputs': 0}"], "TASK_FEATURE_LENGTHS['inputs'] must be a positive int, got 0"),
    "feature_length_missing": (["--gin.TASK_FEATURE_LENGTHS={'targets': 8}"], "TASK_FEATURE_LENGTHS must be a dict with an 'inputs' length"),
    "feature_length_too_long": (["--gin.TASK_FEATURE_LENGTHS={'inputs': 4096}"], "exceeds EncoderConfig.max_len=512"),
    "train_steps_negative": (["--gin.TRAIN_STEPS=-3"], "TRAIN_STEPS must be a positive int, got -3"),
    "batch_size_not_divisible": (["--gin.BATCH_SIZE=12"], "BATCH_SIZE=12 is not divisible by the mesh's data axis (8)"),
    "heads_not_dividing_hidden": (["--gin.encoder.EncoderConfig.num_heads=5"], "d_model=32 is not divisible by num_heads=5"),
    "hidden_not_divisible_by_model_axis": (["--gin.partitioning.make_mesh.mesh_shape=(2, 4)",
                                            "--gin.encoder.EncoderConfig.num_heads=2"],
                                           "EncoderConfig.num_heads=2 is not divisible by the mesh's model axis (4)"),
    "mesh_larger_than_devices": (["--gin.partitioning.make_mesh.mesh_shape=(16, 1)"], "needs 16 devices but 8 are available"),
    "mesh_bad_rule_axis": (["--gin.partitioning.logical_axis_rules.overrides=[('tasks', 'modle')]"], "mesh axes are ('data', 'model')"),
    "dropout_out_of_range": (["--gin.encoder.EncoderConfig.dropout_rate=1.5"], "dropout_rate must be in [0, 1), got 1.5"),
    "learning_rate_zero": (["--gin.optim.make_optimizer.learning_rate=0.0"], "learning_rate must be > 0, got 0.0"),
    "eval_period_zero": (["--gin.trainer.train.eval_period=0"], "train.eval_period must be a positive int, got 0"),
    "keep_checkpoints_zero": (["--gin.trainer.train.keep_checkpoints=0"], "train.keep_checkpoints must be a positive int, got 0"),
    "unknown_weighting": (["--gin.losses.combine_task_losses.weighting=uniformly"], "unknown loss weighting 'uniformly'"),
    "unknown_nonfinite_policy": (["--gin.trainer.train.on_nonfinite=ignore"], "train.on_nonfinite must be one of ('stop', 'skip'), got 'ignore'"),
    "bad_best_metric": (["--gin.trainer.train.best_metric=bbc/accuracy"], "train.best_metric 'bbc/accuracy' must be 'average' or '<task>/<metric>'"),
    "label_outside_classes": (["--gin.MIXTURE_OR_TASK_NAME=broken_label"], "task 'broken_label' train example 5 has label 7 outside the head's 2 classes"),
    "regression_label_nan": (["--gin.MIXTURE_OR_TASK_NAME=broken_nan"], "task 'broken_nan' train example 5 has regression target nan"),
    "empty_split": (["--gin.MIXTURE_OR_TASK_NAME=broken_empty"], "task 'broken_empty' has an empty 'validation' split"),
    "missing_gin_file": (["--gin_file=gin/runs/no_such_run.gin"], "no_such_run.gin"),
}


def _snapshot(path: pathlib.Path):
  return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")) \
      if path.exists() else None


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_error_and_model_dir_untouched(case, tmp_path, capsys):
  extra, expected = CASES[case]
  model_dir = tmp_path / "run"
  rc = train.main([*BASE, f"--gin.MODEL_DIR={model_dir}", *extra])
  err = capsys.readouterr().err
  lines = [l for l in err.splitlines() if l.startswith("mtl-train: error:")]
  assert rc == 2, err[-2000:]
  assert len(lines) == 1 and expected in lines[0], err[-2000:]
  assert not model_dir.exists()


def test_model_dir_not_writable(tmp_path, capsys):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  rc = train.main([*BASE, f"--gin.MODEL_DIR={blocker}/run"])
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert rc == 2 and "cannot be created" in line and "is not a directory" in line
  assert blocker.read_text() == "not a directory"


def test_missing_required_macro(tmp_path, capsys):
  rc = train.main(BASE)  # no MODEL_DIR
  line = [l for l in capsys.readouterr().err.splitlines() if l.startswith("mtl-train: error:")]
  assert rc == 2 and len(line) == 1 and "MODEL_DIR" in line[0], line


def test_resume_with_different_model_is_refused_and_dir_unchanged(tmp_path, capsys):
  model_dir = tmp_path / "run"
  assert train.main([*BASE, ONE_DEVICE, f"--gin.MODEL_DIR={model_dir}"]) == 0
  before = _snapshot(model_dir)
  rc = train.main([*BASE, ONE_DEVICE, f"--gin.MODEL_DIR={model_dir}", "--gin.encoder.EncoderConfig.d_model=64",
                   "--gin.TRAIN_STEPS=4"])
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert rc == 2 and "holds a run with a different model: EncoderConfig.d_model 32 -> 64" in line, line
  assert _snapshot(model_dir) == before
  rc = train.main([*BASE, ONE_DEVICE, f"--gin.MODEL_DIR={model_dir}", "--gin.MIXTURE_OR_TASK_NAME=bbc_topic",
                   "--gin.TRAIN_STEPS=4"])
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert rc == 2 and "tasks ['bbc_topic', 'rotten_tomatoes', 'vader_tweets'] -> ['bbc_topic']" in line, line
  assert _snapshot(model_dir) == before
  # other parameter groups give the optimizer state another shape: refused, naming them
  rc = train.main([*BASE, ONE_DEVICE, f"--gin.MODEL_DIR={model_dir}", "--gin_file=gin/optim/freeze_embeddings.gin",
                   "--gin.TRAIN_STEPS=4"])
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert rc == 2 and "param_groups {'freeze': []" in line and "-> {'freeze': ['^embedder/']" in line, line
  assert _snapshot(model_dir) == before


_MUTABLE = {"rows": [{"text": f"sentence number {i}", "label": i % 2} for i in range(16)]}
registration.add_task("mutable_data", kind="classification", vocabulary=offline.VOCABULARY,
                      label_names=("neg", "pos"), examples_fn=lambda split: list(_MUTABLE["rows"]))


def test_resume_on_changed_data_is_refused_naming_the_task_unless_accepted(tmp_path, capsys):
  model_dir = tmp_path / "run"
  args = [*BASE, ONE_DEVICE, f"--gin.MODEL_DIR={model_dir}", "--gin.MIXTURE_OR_TASK_NAME=mutable_data"]
  assert train.main(args) == 0
  spec_path = model_dir / "run_spec.json"
  assert json.loads(spec_path.read_text())["data"]["mutable_data"].startswith("examples-sha256:")
  _MUTABLE["rows"] = [*_MUTABLE["rows"][:-1], {"text": "an edited sentence", "label": 1}]
  before = _snapshot(model_dir)
  rc = train.main([*args, "--gin.TRAIN_STEPS=4"])
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert rc == 2 and "the data of task(s) mutable_data changed since this run started" in line, line
  assert "--gin.data_fingerprint.accept_changed_data=True" in line and _snapshot(model_dir) == before
  spec = json.loads(spec_path.read_text())
  del spec["data"]  # a run_spec.json written before fingerprints: resumable as before
  spec_path.write_text(json.dumps(spec))
  assert train.main([*args, "--gin.TRAIN_STEPS=4"]) == 0
  _MUTABLE["rows"] = _MUTABLE["rows"][1:]
  assert train.main([*args, "--gin.TRAIN_STEPS=6", "--gin.data_fingerprint.accept_changed_data=True"]) == 0
  assert "changed since this run started; accepted" in capsys.readouterr().out


FAULTS = {  # injected by mtl_jax/run/faults.py at a chosen step; each ends in one line, no traceback
    "disk_full_writing_results": ("enospc_results@2", "at step 2 while writing results: No space left on device ("),
    "disk_full_writing_tensorboard": ("enospc_tensorboard@2",
                                      "at step 2 while writing TensorBoard summaries: No space left on device ("),
    "device_oom_first_step": ("oom_train_step@1", "out of device memory compiling or running train step 1 with "
                              "sharing=hard on 8 device(s): train state ~"),
}


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_exhaustion_is_one_line_naming_the_way_out(case, tmp_path, capsys, monkeypatch):
  fault, expected = FAULTS[case]
  monkeypatch.setenv("MTL_JAX_FAULTS", fault)
  model_dir = tmp_path / "run"
  rc = train.main([*BASE, f"--gin.MODEL_DIR={model_dir}", "--gin.trainer.train.eval_period=2"])
  err = capsys.readouterr().err
  lines = [l for l in err.splitlines() if l.startswith("mtl-train: error:")]
  assert rc == 2 and len(lines) == 1 and expected in lines[0], err[-3000:]
  assert "Traceback" not in err and not (model_dir / "trainer.lock").exists()
  if case.startswith("disk_full"):  # the final results.json is written only after the final checkpoint (#27)
    kept = "the last good checkpoint is step 2" if case.endswith("results") else "no checkpoint was written yet"
    assert f"MODEL_DIR {model_dir} at step 2" in lines[0] and kept in lines[0]
  else:
    assert "XLA asked for 123456789 bytes" in lines[0] and "--gin.BATCH_SIZE (now 16; try 8)" in lines[0]
    assert "gin/meshes/model_parallel_2.gin" in lines[0] and "--gin.microbatches.num=4" in lines[0]
    assert "remat_policy='full'" in lines[0] and "gin/meshes/fsdp.gin" in lines[0]
