"""gin parsing of the run files, --gin.KEY=VALUE overrides and unknown bindings."""

import gin
import pytest

from mtl_jax import gin_args, train


pytestmark = pytest.mark.usefixtures("clean_gin")  # conftest: gin cleared around every test


def test_quickstart_parses_with_override():
  args, bindings = train.parse_args(["--gin_file=gin/runs/quickstart.gin", "--gin.TRAIN_STEPS=7",
                                     "--gin.MODEL_DIR=/tmp/x y", "--gin.BATCH_SIZE=8"])
  assert bindings == ["TRAIN_STEPS = 7", "MODEL_DIR = '/tmp/x y'", "BATCH_SIZE = 8"]
  train.parse_gin(args.gin_file, bindings)
  assert gin.query_parameter("%TRAIN_STEPS") == 7
  assert gin.query_parameter("%MODEL_DIR") == "/tmp/x y"
  assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == "quickstart"
  assert gin.query_parameter("trainer.train.sharing") == "hard"
  assert gin.query_parameter("encoder.EncoderConfig.d_model") == 128


def test_gin_values_keep_literals_and_references():
  assert gin_args.gin_value("{'inputs': 64}") == "{'inputs': 64}"
  assert gin_args.gin_value("@foo") == "@foo"
  assert gin_args.gin_value("%BAR") == "%BAR"
  assert gin_args.gin_value("hard") == "'hard'"
  assert gin_args.gin_value("3e-4") == "3e-4"


def test_unknown_binding_is_an_error():
  with pytest.raises(ValueError, match="trainer.train has no parameter 'no_such_knob'; its parameters: model_dir, "):
    train.parse_gin(["gin/runs/quickstart.gin"], ["trainer.train.no_such_knob = 3"])


def test_missing_gin_file_flag_is_a_usage_error(capsys):
  with pytest.raises(SystemExit):
    train.parse_args(["--gin.TRAIN_STEPS=3"])
  assert "--gin_file=gin/runs/quickstart.gin" in capsys.readouterr().err
