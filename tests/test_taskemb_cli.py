"""mtl-taskemb end to end on tiny shapes: fine-tune per task, TextEmb / TaskEmb / affinity, rankings, groups."""

import json

import numpy as np

from mtl_jax.compare import grid
from mtl_jax.taskemb import cli

TASKS = ["bbc_topic", "rotten_tomatoes", "vader_tweets"]


def test_cli_end_to_end_on_tiny_shapes(tmp_path, capsys):
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
  with np.load(out / "textemb.npz") as e:
    assert e["textemb"].shape == (3, 32) and list(e["tasks"]) == TASKS
  for method in ("textemb", "taskemb", "taskemb_act", "affinity"):
    assert (out / "plots" / f"similarity_{method}.png").stat().st_size > 1000
    lines = (out / f"similarity_{method}.csv").read_text().splitlines()
    assert lines[0] == "task," + ",".join(TASKS) and len(lines) == 4
  ranking_csv = (out / "ranking.csv").read_text().splitlines()
  methods = [line.split(",")[0] for line in ranking_csv[1:]]
  assert methods == ["taskemb", "taskemb_act", "textemb", "affinity", "datasize", "random"]
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
  assert cli.main([*argv[:1], "--methods=textemb,fisherz", f"--out_dir={out}"]) == 2
  assert "unknown ['fisherz']" in capsys.readouterr().err
