"""Issue #26 item 2: a typo'd macro, parameter or gin file fails in one line with a "did you mean",
exit 2, and writes nothing; the file, macro and (project configurables') parameter checks run before the
heavy imports: the subprocess prints nothing else (TF / JAX never started)."""

import subprocess
import sys
import time

import pytest

from conftest import REPO, run_main, subprocess_env


def _binary(tmp_path, *args):
  model_dir = tmp_path / "run"
  start = time.time()
  proc = subprocess.run([sys.executable, "-m", "mtl_jax.train", "--gin_file=gin/runs/quickstart.gin", *args,
                         f"--gin.MODEL_DIR={model_dir}"], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=120)
  return proc, time.time() - start, model_dir


@pytest.mark.parametrize("arg, expected", [
    ("--gin.TRAIN_STEP=40", "did you mean --gin.TRAIN_STEPS?"),
    ("--gin_file=gin/sharing/adapter.gin", "did you mean gin/sharing/adapters.gin?"),
    ("--gin_file=gin/sharng/lora.gin", "did you mean gin/sharing/lora.gin?"),
    ("--gin.trainer.train.evl_period=3", "trainer.train has no parameter 'evl_period'; did you mean "
                                         "trainer.train.eval_period?"),
    ("--gin.optim.make_optimizer.learning_rat=3", "did you mean optim.make_optimizer.learning_rate?"),
])
def test_typo_is_one_line_with_suggestion_before_heavy_imports(tmp_path, arg, expected):
  proc, _, model_dir = _binary(tmp_path, arg)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("mtl-train: error: "), proc.stderr
  assert expected in lines[0]
  assert not model_dir.exists()
  # tensorflow was never imported: nothing of its start-up reached stderr and stdout is empty
  assert proc.stdout == ""


def test_macro_used_by_a_loaded_file_or_base_gin_is_accepted():
  from mtl_jax import gin_check
  texts = gin_check.loaded_texts(["gin/runs/quickstart.gin"])
  assert gin_check.unknown_macro_message(["TRAIN_STEPS = 40", "BATCH_SIZE = 8", "MODEL_DIR = '/x'"], texts) is None
  # a macro bound on the command line and used by another command-line binding is known
  assert gin_check.unknown_macro_message(["MY_LR = 0.1", "optim.make_optimizer.learning_rate = %MY_LR"],
                                         texts) is None
  assert "did you mean --gin.BATCH_SIZE?" in gin_check.unknown_macro_message(["BATCH_SIZ = 8"], texts)
  # parameter bindings (dotted) are gin's to check, not macros
  assert gin_check.unknown_macro_message(["trainer.train.eval_period = 5"], texts) is None


def test_parameter_check_before_imports_trusts_only_what_it_can_read():
  from mtl_jax import gin_check
  assert gin_check.unknown_parameter_message(["reviews/from_files.task.nam = 'x'"]) == (
      "from_files.task has no parameter 'nam'; did you mean from_files.task.name?")
  # known parameters, and configurables it cannot read without importing (gin checks those later): no error
  assert gin_check.unknown_parameter_message(["trainer.train.eval_period = 3", "encoder.EncoderConfig.d_model = 8",
                                              "some_module.some_fn.anything = 1", "train.eval_period = 2"]) is None


def test_unknown_parameter_and_configurable_suggest_the_right_name(tmp_path, clean_gin):
  model_dir = tmp_path / "run"
  out = run_main("--gin_file=gin/runs/quickstart.gin", "--gin.trainer.train.evl_period=3",
                 f"--gin.MODEL_DIR={model_dir}", check=False)
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert lines == ["mtl-train: error: trainer.train has no parameter 'evl_period'; "
                   "did you mean trainer.train.eval_period?"], out.stderr
  out = run_main("--gin_file=gin/runs/quickstart.gin", "--gin.trainr.train.seed=3",
                 f"--gin.MODEL_DIR={model_dir}", check=False)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == ["mtl-train: error: no configurable 'trainr.train'; "
                                             "did you mean trainer.train?"], out.stderr
  assert not model_dir.exists()


def test_grid_spec_field_typo_suggests_the_field():
  from mtl_jax.compare import grid
  with pytest.raises(ValueError, match=r"unknown experiment field\(s\) seed; did you mean experiment.seeds\?"):
    grid.load([], ["experiment.seed = [0, 1]"])
