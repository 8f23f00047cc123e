"""Issue #26 on one tiny trained run of the example file tasks:
item 5: TRAIN_STEPS (5) below quickstart's eval_period (100) still evaluates >= 3 times, said at the start;
item 8: a JSONL input missing a task's field names the input file and suggests --tasks;
item 9: a MODEL_DIR whose config.gin imports a foreign module is refused before the import runs
        (one line naming it), and --trust_config reads it;
item 6: mtl-predict's stderr (a new process) holds no absl WARNING / E0000 lines."""

import json
import shutil
import subprocess
import sys

import gin
import pytest

from conftest import ONE_DEVICE, REPO, run_main, subprocess_env
from mtl_jax.predict import cli, config_trust

pytestmark = pytest.mark.xdist_group("first_hour_predict")  # the module's run is built once


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("first_hour") / "run"
  out = run_main("--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/tasks/example_files.gin",
                 "--gin_file=gin/models/tiny.gin", "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.BATCH_SIZE=16",
                 "--gin.TRAIN_STEPS=5", f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE)
  yield model_dir, out
  gin.clear_config()


def test_short_run_still_draws_a_learning_curve(run):
  model_dir, out = run
  steps = [json.loads(l)["step"] for l in (model_dir / "eval_history.jsonl").read_text().splitlines()]
  assert steps == [1, 2, 3, 4, 5]  # TRAIN_STEPS // 5 = 1
  assert ("mtl_jax: train.eval_period=100 > TRAIN_STEPS=5: evaluating every 1 step instead" in out.stdout), out.stdout


def test_eval_schedule_rule():
  from mtl_jax.run import eval_schedule
  said = []
  assert eval_schedule.period(100, 40, said.append) == 8 and "evaluating every 8 steps" in said[0]
  assert eval_schedule.period(10, 40, said.append) == 10 and len(said) == 1  # not larger: as configured
  assert eval_schedule.period(100, 3, said.append) == 1


def test_missing_field_names_the_file_and_suggests_tasks(run, tmp_path, capsys):
  model_dir, _ = run
  path = tmp_path / "pairs_only.jsonl"
  path.write_text(json.dumps({"premise": "a cat sat", "hypothesis": "a cat was sitting"}) + "\n")
  assert cli.main([f"--model_dir={model_dir}", f"--input={path}", "--tasks=file_pairs,file_ratings"]) == 2
  lines = [l for l in capsys.readouterr().err.splitlines() if not l.startswith("mtl_jax: file task")]  # label notes
  assert len(lines) == 1, lines
  assert lines[0].startswith(f"mtl-predict: error: {path}:1: no field 'text' (task 'file_ratings' reads text)")
  assert "choose its tasks with --tasks (this run's other tasks: file_ner, file_pairs, file_reviews," in lines[0]
  # the same input for the pair task alone is fine
  assert cli.main([f"--model_dir={model_dir}", f"--input={path}", "--tasks=file_pairs"]) == 0
  assert json.loads(capsys.readouterr().out)["tasks"]["file_pairs"]["label"] in ("different", "same")


def test_foreign_import_in_config_gin_is_refused_unless_trusted(run, tmp_path, capsys, monkeypatch):
  model_dir, _ = run
  shared = tmp_path / "shared_run"
  shutil.copytree(model_dir, shared, ignore=shutil.ignore_patterns("trainer.lock"))
  marker = tmp_path / "imported.txt"
  (tmp_path / "mods").mkdir()
  (tmp_path / "mods" / "fh_payload.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
  monkeypatch.syspath_prepend(str(tmp_path / "mods"))
  config = shared / "config.gin"
  config.write_text("from mtl_jax import optim\nimport fh_payload\n" + config.read_text())
  texts = tmp_path / "in.txt"
  texts.write_text("the film was great\n")
  assert cli.main([f"--model_dir={shared}", f"--input={texts}", "--tasks=file_reviews"]) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert lines == [f"mtl-predict: error: {config}:2 imports 'fh_payload', which is not a module of this project "
                   "(mtl_jax.*, tasks.*); reading this config would run its code. If you trust this MODEL_DIR, "
                   "pass --trust_config"], lines
  assert not marker.exists()
  assert cli.main([f"--model_dir={shared}", f"--input={texts}", "--tasks=file_reviews", "--trust_config"]) == 0
  assert marker.read_text() == "ran"
  assert config_trust.foreign_imports(model_dir / "config.gin") == []  # the run's own config passes


def test_foreign_import_in_an_included_file_is_found(tmp_path):
  (tmp_path / "inner.gin").write_text("import os.path as p\n")
  (tmp_path / "config.gin").write_text("import tasks.offline\ninclude 'inner.gin'\n")
  assert config_trust.foreign_imports(tmp_path / "config.gin") == [(str(tmp_path / "inner.gin"), 1, "os.path")]


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_predict_process_stderr_has_no_absl_warning_or_onednn_error(run, tmp_path):
  model_dir, _ = run
  texts = tmp_path / "two.txt"
  texts.write_text("the film was great\nawful camera\n")
  proc = subprocess.run([sys.executable, "-m", "mtl_jax.predict", f"--model_dir={model_dir}", f"--input={texts}",
                         "--tasks=file_reviews"], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert len(proc.stdout.splitlines()) == 2
  noise = [l for l in proc.stderr.splitlines() if l.startswith(("WARNING:absl", "E0000")) or "oneDNN" in l]
  assert noise == [], proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith("mtl-predict: 2 inputs x 1 tasks from best checkpoint")
