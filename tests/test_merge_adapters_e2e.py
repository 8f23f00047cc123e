"""mtl-merge on single-task adapters runs end to end (matrix: ~40 CPU-s): two tiny adapters runs fine-tuned from
one init_from source merged by TIES. The merged MODEL_DIR is an adapters run of both tasks whose every task
slice holds the numpy TIES of the runs' adapters (against 0), whose frozen trunk is the runs' own, and whose
heads are each run's; its results.json carries the pick's validation and test scores. A hard run next to an
adapters run, and Fisher on adapters runs, are refused in one line."""

import json

import numpy as np
import pytest
from flax import traverse_util

from conftest import ONE_DEVICE, run_main
from mtl_jax.merge import cli
from mtl_jax.transfer import init_from
from test_merge_adapters import _ties_reference

pytestmark = [pytest.mark.matrix, pytest.mark.xdist_group("merge_adapters_e2e")]

BASE = ["--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin", ONE_DEVICE,
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.BATCH_SIZE=16", "--gin.TRAIN_STEPS=2",
        "--gin.trainer.train.eval_batch_size=256", "--gin.trainer.train.checkpoint_period=2",
        "--gin.trainer.train.eval_period=2", "--gin.make_optimizer.learning_rate=0.05",
        "--gin.make_optimizer.warmup_steps=1"]


def flat(model_dir):
  return traverse_util.flatten_dict(init_from.restore_params(model_dir)[0], sep="/")


def test_adapters_runs_merge_onto_the_frozen_trunk(tmp_path, capsys):
  source = tmp_path / "source"
  run_main(*BASE, f"--gin.MODEL_DIR='{source}'")
  runs = {}
  for task in ("rotten_tomatoes", "bbc_topic"):
    runs[task] = tmp_path / task
    run_main(*BASE, "--gin_file=gin/sharing/adapters.gin", f"--gin.MIXTURE_OR_TASK_NAME='{task}'",
             "--gin.adapters.size=4", f"--gin.init_from.model_dir='{source}'", f"--gin.MODEL_DIR='{runs[task]}'")
  out = tmp_path / "merged"
  assert cli.main(["--runs", *map(str, runs.values()), "--out", str(out), "--method", "ties",
                   "--grid", "density=0.5", "--grid", "scaling=0.8,1.0"]) == 0
  record = json.loads((out / "merge.json").read_text())
  spec = json.loads((out / "run_spec.json").read_text())
  assert spec["sharing"] == "adapters" and spec["tasks"] == ["bbc_topic", "rotten_tomatoes"]
  results = json.loads((out / "results.json").read_text())
  assert set(results["test"]) == {"bbc_topic", "rotten_tomatoes"} and np.isfinite(results["average"])

  merged, a, b = flat(out), flat(runs["bbc_topic"]), flat(runs["rotten_tomatoes"])
  adapter_paths = [p for p in merged if "/adapter_" in p]
  assert adapter_paths and all(merged[p].shape[0] == 2 for p in adapter_paths)
  for path in adapter_paths:
    expected = _ties_reference(np.stack([a[path][0], b[path][0]]).astype(np.float64), 0.5,
                               record["hparams"]["scaling"])
    np.testing.assert_allclose(merged[path][0], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(merged[path][1], merged[path][0])
  for path in merged:
    if path.startswith(("trunk/layer_", "embedder/")):
      np.testing.assert_array_equal(merged[path], a[path])  # frozen: the starting point in every run
  np.testing.assert_array_equal(merged["heads/kernel"][0, :, :a["heads/kernel"].shape[-1]], a["heads/kernel"][0])

  capsys.readouterr()
  hard = tmp_path / "hard"
  run_main(*BASE, "--gin.MIXTURE_OR_TASK_NAME='vader_tweets'", f"--gin.init_from.model_dir='{source}'",
           f"--gin.MODEL_DIR='{hard}'")
  for extra, needle in (([str(hard)], "merge adapters runs only with adapters runs"),
                        ([], "merge method 'fisher' needs fisher statistics")):
    method = "fisher" if not extra else "ties"
    assert cli.main(["--runs", *map(str, runs.values()), *extra, "--out", str(tmp_path / "no"),
                     "--method", method]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "no").exists()
