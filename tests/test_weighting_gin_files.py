"""Every gin/weighting/*.gin file selects its method through the binary's gin parsing (gradient methods with
task-grouped batches), and one gradient-method file trains through the binary's main()."""

import json
import pathlib

import gin
import pytest

from mtl_jax.input import input_pipeline
from mtl_jax import train, weighting
from conftest import ONE_DEVICE

FILES = sorted(pathlib.Path(train.REPO_ROOT, "gin", "weighting").glob("*.gin"))
BASE = ["gin/runs/quickstart.gin", "gin/models/tiny.gin"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_weighting_gin_file_selects_its_method(path):
  extra = ["weighting.static.weights = [1.0, 2.0, 1.0]"] if path.stem == "static" else []  # static needs its weights
  train.parse_gin([*BASE, str(path)], extra)
  try:
    chosen = weighting.configured(3)
    layout = input_pipeline.batch_layout()
  finally:
    gin.clear_config()
  name, rep_grad = ("mgda", True) if path.stem == "mgda_ub" else (path.stem, False)
  assert (chosen.name, chosen.rep_grad) == (name, rep_grad)
  assert layout == ("grouped" if chosen.kind == "gradient" else "mixed")


@pytest.mark.e2e  # a run through the binary (default-suite budget)
def test_a_gradient_method_trains_through_the_binary(tmp_path):
  """The quickstart's BATCH_SIZE = 32 is not a multiple of its 3 tasks: the task groups are padded."""
  model_dir = tmp_path / "pcgrad"
  assert train.main(["--no_progress", *(f"--gin_file={f}" for f in BASE), "--gin_file=gin/weighting/pcgrad.gin",
                     "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.TRAIN_STEPS=2",
                     "--gin.trainer.train.eval_batch_size=512", f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE]) == 0
  assert json.loads((model_dir / "results.json").read_text())["step"] == 2
  assert "pcgrad" in json.dumps(json.loads((model_dir / "run_spec.json").read_text()).get("weighting"))
