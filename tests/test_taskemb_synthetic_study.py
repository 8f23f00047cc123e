"""The one-command planted-relations study on a tiny grid (3 sources x 2 targets, 1 seed, a few steps):
the transfer grid in-process, then every method scored with CIs; targets embedded from their regime."""

import json

import numpy as np
import pytest

from conftest import run_cell_in_process
from mtl_jax.taskemb import synthetic_study

TINY = ["--gin.transfer.sources=['syncat_f0_m0', 'syncat_f0_m2', 'syncat_f2_m0']",
        "--gin.transfer.targets=['syncat_f0_m1', 'syncat_f2_m1']", "--gin.transfer.seeds=[0]",
        "--gin.transfer.parallel=1",
        "--gin.transfer.source_bindings={'TRAIN_STEPS': 6, 'trainer.train.eval_period': 6, "
        "'trainer.train.checkpoint_period': 6}",
        "--gin.transfer.target_bindings={'TRAIN_STEPS': 4, 'trainer.train.eval_period': 4, "
        "'trainer.train.checkpoint_period': 4}"]


def test_oracle_csv_is_the_planted_overlap(tmp_path):
  from mtl_jax.data import synthetic_catalogue as cat
  from mtl_jax.taskemb import similarity
  assert synthetic_study.main([f"--out_dir={tmp_path}", f"--write_oracle={tmp_path / 'o.csv'}"]) == 0
  names, m = similarity.read_csv(tmp_path / "o.csv")
  assert names == cat.task_names() and np.allclose(m, cat.planted_overlap(names), atol=1e-6)


@pytest.mark.matrix
def test_tiny_study_end_to_end(tmp_path):
  calls = []

  def launch(argv, log_path, env):
    calls.append(argv)
    return run_cell_in_process(argv)

  out = tmp_path / "study"
  assert synthetic_study.main([f"--out_dir={out}", "--max_examples=64", *TINY], launcher=launch) == 0
  assert len(calls) == 3 + 2 * 4  # 3 stage-1 runs, 2 targets x (3 sources + none)
  ci = json.loads((out / "taskemb" / "ranking_ci.json").read_text())
  assert ci["targets"] == ["syncat_f0_m1", "syncat_f2_m1"]
  assert [r["method"] for r in ci["rows"]][-3:] == ["oracle", "datasize", "random"]
  assert {"taskemb", "textemb"} <= {r["method"] for r in ci["rows"]}
  # targets are embedded from their own 100-example regime ('none' cells), sources from stage 1 (capped at 64)
  # (a target's Fisher is cached under its role, '__as_target'; these targets are no one's source, so have no other)
  for task, name in (("syncat_f0_m1", "syncat_f0_m1__seed0__as_target"), ("syncat_f0_m0", "syncat_f0_m0__seed0")):
    with np.load(out / "taskemb" / "fisher" / f"{name}.npz") as z:
      assert float(z["examples"]) == 64 and ("target__none" in str(z["key"])) == task.endswith("m1")
  assert not (out / "taskemb" / "fisher" / "syncat_f0_m1__seed0.npz").exists()
  report = (out / "taskemb" / "report.md").read_text()
  assert "| oracle | 1 |" in report and "bootstrap CI over targets" in report
  # the oracle ranks f0_m1's in-family sources first (planted overlap), whatever a 4-step truth says
  per_target = json.loads((out / "taskemb" / "ranking_per_target.json").read_text())
  assert per_target["syncat_f0_m1"]["oracle"] == ["syncat_f0_m0", "syncat_f0_m2", "syncat_f2_m0"]
