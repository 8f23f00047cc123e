"""mtl-taskemb end to end on tiny shapes: fine-tune per task, TextEmb / TaskEmb / affinity, rankings, groups."""

import json

import numpy as np

from mtl_jax.compare import grid
from mtl_jax.taskemb import cli
import pytest

TASKS = ["bbc_topic", "rotten_tomatoes", "vader_tweets"]


def _matrix_and_affinity(tmp_path):
  matrix = {"matrix": [], "cells": []}
  truth = {"bbc_topic": {"rotten_tomatoes": 0.5, "vader_tweets": 0.4},
           "rotten_tomatoes": {"bbc_topic": 0.6, "vader_tweets": 0.7},
           "vader_tweets": {"bbc_topic": 0.1, "rotten_tomatoes": 0.3}}
  for target, sources in truth.items():
    matrix["matrix"].append({"source": "none", "target": target, "regime": "n8", "mean": 0.0})
    matrix["matrix"] += [{"source": s, "target": target, "regime": "n8", "mean": v} for s, v in sources.items()]
  (tmp_path / "transfer_matrix.json").write_text(json.dumps(matrix))
  (tmp_path / "aff").mkdir()
  z = [[0.3, 0.1, -0.2], [0.05, 0.4, 0.2], [-0.1, 0.3, 0.5]]  # Z[source -> target]
  (tmp_path / "aff" / "affinity.json").write_text(json.dumps({"tasks": TASKS, "affinity": z}))
  return matrix


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_cli_end_to_end_on_tiny_shapes(tmp_path, capsys):
  _matrix_and_affinity(tmp_path)
  out = tmp_path / "out"
  argv = ["--tasks=" + ",".join(TASKS), "--methods=taskemb,textemb,affinity",
          f"--trunk=tiny=run:{out}/finetune/rotten_tomatoes__seed0", "--seeds=0",
          "--finetune_gin_file=gin/runs/quickstart.gin", "--finetune_gin_file=gin/models/tiny.gin",
          "--finetune_steps=2", "--finetune_binding=BATCH_SIZE=8",
          "--finetune_binding=make_mesh.mesh_shape=(1, 1)",  # one device, as a user's run: ~10% less CPU here
          "--finetune_binding=TASK_FEATURE_LENGTHS={'inputs': 16}", "--finetune_binding=trainer.train.eval_batch_size=256",
          "--max_length=16", "--max_examples=12", "--fisher_batch_size=4", f"--affinity_run={tmp_path / 'aff'}",
          f"--transfer_matrix={tmp_path / 'transfer_matrix.json'}", "--random_seeds=4", "--k=1,2", "--budget=2",
          f"--cache_dir={tmp_path / 'cache'}", f"--out_dir={out}"]
  assert cli.main(argv) == 0
  index = json.loads((out / "embeddings.json").read_text())
  assert set(index) == {"taskemb_seed0", "textemb", "affinity_seed0"}
  with np.load(out / "taskemb_seed0.npz") as e:
    assert e["params"].shape[0] == 3 and e["activations"].shape == (3, 2, 32) and (e["params"] >= 0).all()
    # per component: 2 layer outputs, 2 attention outputs, the pooled vector, the classifiers, trunk tensors
    assert e["component_cosines"].shape[1:] == (3, 3) and e["component_cosines"].shape[0] > 5
  assert "pooled" in index["taskemb_seed0"]["components"] and index["taskemb_seed0"]["combine"] == "rrf"
  with np.load(out / "textemb.npz") as e:
    assert e["textemb"].shape == (3, 32) and list(e["tasks"]) == TASKS
  for method in ("textemb", "textemb_layers", "taskemb", "taskemb_concat", "taskemb_act", "affinity"):
    assert (out / "plots" / f"similarity_{method}.png").stat().st_size > 1000
    lines = (out / f"similarity_{method}.csv").read_text().splitlines()
    assert lines[0] == "task," + ",".join(TASKS) and len(lines) == 4
  ranking_csv = (out / "ranking.csv").read_text().splitlines()
  methods = [line.split(",")[0] for line in ranking_csv[1:]]
  assert methods == ["taskemb", "taskemb_concat", "taskemb_act", "textemb", "textemb_layers", "affinity", "datasize",
                     "random"]
  assert ranking_csv[0].startswith("method,n,rank_of_best_mean")
  # affinity ranks by Z[source -> target]: bbc <- rt (0.05) over tweets (-0.1): the true best, for every target
  per_target = json.loads((out / "ranking_per_target.json").read_text())
  assert per_target["bbc_topic"]["affinity"] == ["rotten_tomatoes", "vader_tweets"]
  assert per_target["rotten_tomatoes"]["affinity"] == ["vader_tweets", "bbc_topic"]
  affinity_row = ranking_csv[1 + methods.index("affinity")].split(",")
  assert float(affinity_row[2]) == 1.0  # rank of the true best: first for every target
  assert int(ranking_csv[1 + methods.index("random")].split(",")[1]) == 4
  exp = grid.load([str(out / "groups_affinity.gin")])
  assert {t for m in exp.mixtures for t in exp.tasks.get(m, [m])} == set(TASKS) and len(exp.mixtures) == 2  # every task served
  report = (out / "report.md").read_text()
  assert "| datasize | 1 |" in report and "ndcg@1" in report and "similarity_textemb.png" in report
  assert "95% percentile bootstrap CI over targets" in report and "| affinity | random | ndcg@1 |" in report
  assert "Random's closed-form expectation" in report and "rank_of_best 1.500" in report  # (2 + 1) / 2
  ci = json.loads((out / "ranking_ci.json").read_text())
  assert ci["targets"] == sorted(TASKS) and {c["baseline"] for c in ci["comparisons"]} == {"datasize", "random"}

  assert cli.main([*argv[:1], "--methods=textemb,fisherz", f"--out_dir={out}"]) == 2
  assert "unknown ['fisherz']" in capsys.readouterr().err


@pytest.mark.e2e  # a run through the binary (default-suite budget)
def test_cli_closed_loop_experiment_and_bad_truth_are_one_line(tmp_path, capsys):
  """Affinity only (no training): the top-K mixture experiment, then each bad input fails in one line."""
  matrix = _matrix_and_affinity(tmp_path)
  out = tmp_path / "out"
  argv = ["--tasks=" + ",".join(TASKS), "--methods=affinity", f"--affinity_run={tmp_path / 'aff'}",
          f"--transfer_matrix={tmp_path / 'transfer_matrix.json'}", "--random_seeds=2", "--k=1,2",
          f"--out_dir={out}", "--groups_gin_file=gin/runs/quickstart.gin"]
  # the closed loop: top-1 source of bbc_topic by affinity (rotten_tomatoes) vs all vs random (the other) vs none
  assert cli.main([*argv, "--select_k=1", "--target=bbc_topic"]) == 0
  from mtl_jax.transfer import grid as transfer_grid
  exp = transfer_grid.load([str(out / "select_vs_all__bbc_topic__k1.gin")])
  assert exp.targets == ("bbc_topic",) and exp.baseline
  assert exp.sources == ("rotten_tomatoes", "taskemb_group.rotten_tomatoes.vader_tweets", "vader_tweets")
  group = "taskemb_group.rotten_tomatoes.vader_tweets"
  assert exp.env == {"MTL_JAX_TASKEMB_GROUPS": f"{group}=rotten_tomatoes,vader_tweets"}
  exp.validate()
  # without --k: the default cut-offs that fit 2 candidates (1; not 3)
  assert cli.main([a for a in argv if not a.startswith("--k=")]) == 0
  assert "ndcg@1_mean" in (out / "ranking.csv").read_text() and "ndcg@3" not in (out / "ranking.csv").read_text()
  assert cli.main([*argv, "--k=3"]) == 2
  assert "k=3 is larger than the 2 candidate sources" in capsys.readouterr().err
  assert cli.main([*argv, "--select_k=3", "--target=bbc_topic"]) == 2
  assert "--select_k=3 is larger than the 2 candidate sources of target 'bbc_topic'" in capsys.readouterr().err
  assert cli.main([*argv, "--select_k=1"]) == 2
  assert "--select_k and --target go together" in capsys.readouterr().err
  matrix["experiment"] = {"targets": TASKS, "sources": TASKS, "pairs": {}}
  matrix["matrix"] = [r for r in matrix["matrix"] if (r["target"], r["source"]) != ("bbc_topic", "vader_tweets")]
  (tmp_path / "transfer_matrix.json").write_text(json.dumps(matrix))
  assert cli.main(argv) == 2
  assert "target 'bbc_topic' has no finished score for source(s) ['vader_tweets']" in capsys.readouterr().err
  matrix["experiment"] = {}
  (tmp_path / "transfer_matrix.json").write_text(json.dumps(matrix))
  assert cli.main([*argv[:-3], "--k=1", *argv[-2:]]) == 2
  err = capsys.readouterr().err
  assert "target 'bbc_topic' has 1 candidate source(s) ['rotten_tomatoes']: ranking needs >= 2" in err
