"""The gin binary end to end: results.json, config, TensorBoard files, and auto-resume.

The first run is a real child process of the binary; the resume and the refused task run the binary's main()
in this process (the same code after the interpreter starts; test_quiet_start.py checks a child's stderr)."""

import json

import pytest

from conftest import ONE_DEVICE, run_binary, run_main


@pytest.mark.e2e  # a run through the binary (default-suite budget)
def test_binary_trains_writes_results_and_resumes(tmp_path, tiny_args):
  model_dir = tmp_path / "run"
  common = (*tiny_args, f"--gin.MODEL_DIR={model_dir}", "--gin.trainer.train.checkpoint_period=4",
            "--gin.trainer.train.eval_period=4", "--gin.trainer.train.log_period=2")
  first = run_binary(*common, "--gin.TRAIN_STEPS=4")
  assert "resuming" not in first.stdout
  results = json.loads((model_dir / "results.json").read_text())
  assert results["step"] == 4
  assert set(results["tasks"]) == {"bbc_topic", "rotten_tomatoes", "vader_tweets"}
  assert {"accuracy", "f1_macro"} <= set(results["tasks"]["bbc_topic"])
  assert {"pearson", "spearman"} <= set(results["tasks"]["vader_tweets"])
  headlines = [r["headline"] for r in results["tasks"].values()]
  assert abs(results["average"] - sum(headlines) / 3) < 1e-9
  config = (model_dir / "config.gin").read_text()
  flat = "".join(config.replace("\\\n", "").split())  # gin wraps long values as 'KEY = \<newline>  value'
  assert f"MODEL_DIR='{model_dir}'" in flat
  assert "train.sharing = 'hard'" in config
  assert list((model_dir / "train").glob("events.out.tfevents.*"))
  assert list((model_dir / "eval").glob("events.out.tfevents.*"))

  second = run_main(*common, "--gin.TRAIN_STEPS=8", ONE_DEVICE)
  assert "resuming from checkpoint at step 4" in second.stdout
  results = json.loads((model_dir / "results.json").read_text())
  assert results["step"] == 8
  history = [json.loads(l)["step"] for l in (model_dir / "eval_history.jsonl").read_text().splitlines()]
  assert history == [4, 8]
  # best-by-validation checkpoint: the eval with the highest average, kept apart from the last N
  records = [json.loads(l) for l in (model_dir / "eval_history.jsonl").read_text().splitlines()]
  best = max(records, key=lambda r: r["average"])
  best_json = json.loads((model_dir / "best.json").read_text())
  assert best_json["step"] == best["step"] and abs(best_json["score"] - best["average"]) < 1e-12
  assert [p.name for p in (model_dir / "checkpoints_best").iterdir() if p.name.isdigit()] == [str(best["step"])]


def test_unknown_task_is_one_clear_line_and_touches_nothing(tmp_path, tiny_args):
  model_dir = tmp_path / "never"
  proc = run_main(*tiny_args, f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=2",
                  "--gin.MIXTURE_OR_TASK_NAME=quickstrat", check=False)
  assert proc.returncode == 2
  err = [l for l in proc.stderr.splitlines() if l.startswith("mtl-train: error:")]
  assert err == ["mtl-train: error: unknown task or mixture 'quickstrat'. Did you mean 'quickstart'? "
                 + err[0].split("Did you mean 'quickstart'? ", 1)[1]]
  assert not model_dir.exists()
