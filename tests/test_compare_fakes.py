"""Fake cells for the mtl-compare tests: a stand-in train binary that writes what the real
one writes (results.json, eval_history.jsonl, config.gin, the parameter line, optionally
mixing_weights.json) in milliseconds, with scores fixed by (strategy, task, seed).

Why: aggregation, report and plots can be checked on many cells without training; only
test_compare_real_e2e.py pays for the real binary. Other test_compare_* modules import
`write_cell` / `fake_binary` from here.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

MIXING_WEIGHTS_FILE = "mixing_weights.json"  # collect.MIXING_WEIGHTS_FILE; kept import-free for the fake binary

FAKE_BINARY = r'''
import json, os, pathlib, re, sys
sys.path.insert(0, os.environ["FAKE_HELPER_DIR"])
from test_compare_fakes import write_cell
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
gin_files = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--gin_file=")]
strategy = pathlib.Path(gin_files[-1]).stem if gin_files else "hard"
with open(os.environ["FAKE_COUNTER"], "a") as f:
  f.write(args["gin.MODEL_DIR"] + "\n")
if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in args["gin.MODEL_DIR"]:
  print("mtl-train: error: fake failure", file=sys.stderr)
  sys.exit(2)
write_cell(pathlib.Path(args["gin.MODEL_DIR"]), strategy, args["gin.MIXTURE_OR_TASK_NAME"],
           int(args["gin.trainer.train.seed"]), int(args.get("gin.TRAIN_STEPS", 10)))
'''


def tasks_of(mixture: str) -> list:
  m = re.match(r"^synthetic_r(\d+)_t(\d+)$", mixture)
  if m:
    return [f"{mixture}_task{t}" for t in range(int(m.group(2)))]
  return {"mixA": ["taskA", "taskB"], "mixB": ["taskB", "taskC"]}.get(mixture, [mixture])


def score(strategy: str, task: str, seed: int, step: int = 10, steps: int = 10) -> float:
  """A deterministic fake headline: strategy and task offsets, seed noise, grows with step."""
  base = {"hard": 0.70, "sluice": 0.74, "soft": 0.72, "cross_stitch": 0.73, "mmoe": 0.71}.get(strategy, 0.68)
  m = re.search(r"_r(\d+)_", task)
  related = int(m.group(1)) / 100 if m else 0.5
  if strategy in ("hard", "sluice", "soft", "cross_stitch", "mmoe"):
    base += 0.04 * (related - 0.5)
  task_offset = (sum(map(ord, task)) % 7) / 100
  return round((base + task_offset + 0.01 * seed) * (0.5 + 0.5 * step / steps), 6)


def write_cell(model_dir: pathlib.Path, strategy: str, mixture: str, seed: int, steps: int = 10,
               mixing: bool = True) -> None:
  """What the real binary leaves in MODEL_DIR, with fake scores."""
  model_dir.mkdir(parents=True, exist_ok=True)
  tasks = tasks_of(mixture)
  (model_dir / "config.gin").write_text(f"# Macros:\nTRAIN_STEPS = {steps}\n")
  history = []
  for step in (steps // 2, steps):
    per_task = {t: score(strategy, t, seed, step, steps) for t in tasks}
    record = {"step": step, "average": sum(per_task.values()) / len(per_task),
              "tasks": {t: {"accuracy": v, "f1_macro": v, "headline": v, "num_examples": 100}
                        for t, v in per_task.items()}}
    history.append(json.dumps(record, sort_keys=True))
  (model_dir / "eval_history.jsonl").write_text("\n".join(history) + "\n")
  for item in ("state", "meta"):  # the final checkpoint, committed (as orbax leaves it): a finished run
    (model_dir / "checkpoints" / str(steps) / item).mkdir(parents=True, exist_ok=True)
  (model_dir / "results.json").write_text(json.dumps(record))
  with open(model_dir / "train.log", "a") as f:
    f.write(f"mtl_jax: sharing={strategy} tasks={len(tasks)} layout=mixed parameters embedder=1,000 heads=20 "
            f"trunk={500 * (2 if strategy != 'hard' else 1)} total={1020 + 500 * (2 if strategy != 'hard' else 1):,}\n")
  if not mixing:
    return
  t = len(tasks)
  weights = {}
  if strategy == "sluice":
    m = 2
    for layer in range(2):
      weights[f"sluice/alpha/layer_{layer}"] = [[1.0 if i == j else 0.1 * layer for j in range(t * m)]
                                                for i in range(t * m)]
    weights["sluice/beta"] = [[0.2, 0.8] for _ in range(t)]
  elif strategy == "cross_stitch":
    for layer in range(2):
      weights[f"cross_stitch/alpha/layer_{layer}"] = [[0.9 if i == j else 0.1 for j in range(t)] for i in range(t)]
  elif strategy == "mmoe":
    weights["mmoe/gate_logits/bias"] = [[float(i == e) for e in range(4)] for i in range(t)]
  if weights:
    (model_dir / MIXING_WEIGHTS_FILE).write_text(json.dumps(weights))


def fake_binary(tmp_path: pathlib.Path) -> tuple:
  """(binary argv prefix, counter file) for experiment.binary; needs env FAKE_HELPER_DIR/FAKE_COUNTER."""
  script = tmp_path / "fake_train.py"
  script.write_text(FAKE_BINARY)
  return (sys.executable, str(script)), tmp_path / "launches.txt"


def fake_env(tmp_path: pathlib.Path, **extra) -> dict:
  from conftest import subprocess_env  # local: this module is also imported by the fake binary
  return subprocess_env(FAKE_HELPER_DIR=str(pathlib.Path(__file__).parent),
                        FAKE_COUNTER=str(tmp_path / "launches.txt"), **extra)


def test_fake_binary_writes_a_cell_collect_reads(tmp_path):
  from mtl_jax.compare import collect
  from mtl_jax.compare.grid import Cell
  assert collect.MIXING_WEIGHTS_FILE == MIXING_WEIGHTS_FILE
  binary, counter = fake_binary(tmp_path)
  model_dir = tmp_path / "cell"
  subprocess.run([*binary, "--gin_file=gin/sharing/sluice.gin", f"--gin.MODEL_DIR={model_dir}",
                  "--gin.MIXTURE_OR_TASK_NAME=mixA", "--gin.trainer.train.seed=1", "--gin.TRAIN_STEPS=10"],
                 check=True, env=fake_env(tmp_path))
  cell = Cell("c", "mtl", "sluice", "mixA", 1, (), (), (("TRAIN_STEPS", 10),))
  got = collect.collect_cell(cell, model_dir)
  assert got["status"] == "done" and got["step"] == 10
  assert got["tasks"]["taskA"] == {"metric": "f1_macro", "value": score("sluice", "taskA", 1),
                                   "lower_is_better": False}
  assert got["params"] == {"embedder": 1000, "heads": 20, "trunk": 1000, "total": 2020}
  assert [h["step"] for h in got["history"]] == [5, 10]
  assert set(got["mixing_weights"]) == {"sluice/alpha/layer_0", "sluice/alpha/layer_1", "sluice/beta"}
  assert counter.read_text().splitlines() == [str(model_dir)]
