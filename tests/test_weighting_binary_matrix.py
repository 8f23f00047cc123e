"""Every gin/weighting/*.gin file through the mtl-train binary's main(): it trains, and a run cut off after
its step-2 checkpoint (what a kill -9 between checkpoints leaves on disk: checkpoint 2, nothing later) resumes
to a final TrainState — weighting state and optimizer state included — bit-identical to the uninterrupted run.
(A real kill -9 of the binary is tests/test_weighting_resume.py, for gradnorm.)

Marked `matrix`: 2 binary runs x 26 gin files is many minutes (~2 min a file on 2 busy cores), so the default
suite (README command 2) deselects it and .ci/run runs it as its own step: `python -m pytest -q -n 2 -m matrix`."""

import json
import pathlib
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mtl_jax import train

FILES = sorted(pathlib.Path(train.REPO_ROOT, "gin", "weighting").glob("*.gin"))
ARGS = ("--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.BATCH_SIZE=24", "--gin.TRAIN_STEPS=4",
        "--gin.trainer.train.checkpoint_period=2", "--gin.trainer.train.eval_period=4",
        "--gin.trainer.train.eval_batch_size=512", "--gin.trainer.train.keep_checkpoints=3",
        "--gin.evaluation.max_examples.value=64")
AFTER_STEP_2 = ("checkpoints/4", "checkpoints_best", "best.json", "results.json", "eval_history.jsonl",
                "operative_config.gin")


def _leaves(model_dir, step):
  tree = ocp.StandardCheckpointer().restore(model_dir / "checkpoints" / str(step) / "state")
  return tree, [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.matrix
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_weighting_file_trains_and_resumes_bit_exactly_through_the_binary(path, tmp_path, clean_gin):
  args = [*ARGS, f"--gin_file={path.relative_to(train.REPO_ROOT)}"]
  if path.stem == "static":
    args.append("--gin.weighting.static.weights=[1.0, 2.0, 1.0]")
  full = tmp_path / "full"
  assert train.main([*args, f"--gin.MODEL_DIR={full}"]) == 0
  assert json.loads((full / "results.json").read_text())["step"] == 4
  method = path.stem if path.stem != "mgda_ub" else "mgda"
  assert method in json.dumps(json.loads((full / "run_spec.json").read_text()).get("weighting"))

  cut = tmp_path / "cut"  # the uninterrupted run's directory as it stood right after checkpoint 2
  shutil.copytree(full, cut)
  for name in AFTER_STEP_2:
    target = cut / name
    shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
  assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["2"]
  assert train.main([*args, f"--gin.MODEL_DIR={cut}"]) == 0

  want_tree, want = _leaves(full, 4)
  _, got = _leaves(cut, 4)
  assert int(want_tree["step"]) == 4 and len(want) == len(got)
  for a, b in zip(want, got):
    np.testing.assert_array_equal(a, b)
  assert json.loads((cut / "results.json").read_text())["average"] == json.loads(
      (full / "results.json").read_text())["average"]
