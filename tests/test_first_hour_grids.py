"""Issue #26 item 1: mtl-compare and mtl-transfer over tasks declared from your own files in gin.

A cell binds the gin call that registers its task or mixture (`@from_files.mixture()`,
`@reviews/from_files.task()`), not the bare name that would replace that binding; a grid whose first
cells fail with one configuration error stops (exit 2, one line) instead of running every doomed cell
and saying "rerun to resume". The end-to-end runs (matrix): README's "Your own data" compare command
and a transfer grid over the same file tasks, through the CLIs, cells run in-process."""

import pathlib
import re
import shlex

import pytest

from conftest import REPO, run_cell_in_process
from mtl_jax.compare import cli as compare_cli, declared, early_stop, grid
from mtl_jax.transfer import cli as transfer_cli, grid as transfer_grid

EXAMPLE = "gin/tasks/example_files.gin"
FILE_TASKS = {"file_reviews": "@reviews/from_files.task()", "file_pairs": "@pairs/from_files.task()",
              "file_ratings": "@ratings/from_files.task()", "file_ner": "@ner/from_files.task()"}


def test_declared_references_from_the_gin_text():
  refs = declared.references(["gin/runs/quickstart.gin", EXAMPLE])
  assert refs == {**FILE_TASKS, "file_example_mix": "@from_files.mixture()"}


def test_compare_cells_bind_the_declaring_call_not_the_name():
  exp = grid.Experiment(gin_files=["gin/runs/quickstart.gin", EXAMPLE], strategies=["hard", "soft"],
                        mixtures=["file_example_mix"], seeds=[0],
                        tasks={"file_example_mix": [*FILE_TASKS, "rotten_tomatoes"]})
  bound = {c.cell_id: dict(c.bindings)["MIXTURE_OR_TASK_NAME"] for c in exp.cells()}
  assert bound == {"hard__file_example_mix__seed0": "@from_files.mixture()",
                   "soft__file_example_mix__seed0": "@from_files.mixture()",
                   **{f"single__{t}__seed0": ref for t, ref in FILE_TASKS.items()},
                   "single__rotten_tomatoes__seed0": "rotten_tomatoes"}
  argv = exp.cells()[0].argv(("mtl-train",), "/tmp/x")
  assert "--gin.MIXTURE_OR_TASK_NAME=@from_files.mixture()" in argv
  # labels (directories, report rows) keep the names
  assert {c.mixture for c in exp.cells()} == {"file_example_mix", *FILE_TASKS, "rotten_tomatoes"}


def test_transfer_cells_bind_the_declaring_call():
  exp = transfer_grid.TransferExperiment(gin_files=["gin/runs/quickstart.gin", EXAMPLE],
                                         sources=["file_example_mix"], targets=["file_reviews"])
  exp.validate()
  cells = [*exp.source_cells(), *exp.target_cells(lambda c: pathlib.Path("/tmp") / c.cell_id)]
  assert [dict(c.bindings)["MIXTURE_OR_TASK_NAME"] for c in cells] == [
      "@from_files.mixture()", "@reviews/from_files.task()", "@reviews/from_files.task()"]


def test_tasks_of_a_declared_mixture_register_from_the_files(clean_gin):
  assert grid.tasks_of_mixture("file_example_mix", ["gin/runs/quickstart.gin", EXAMPLE]) == sorted(
      [*FILE_TASKS, "rotten_tomatoes"])


def test_grid_bindings_with_a_typo_are_one_line():
  exp = grid.Experiment(gin_files=["gin/runs/quickstart.gin"], mixtures=["quickstart"], bindings={"TRAIN_STEP": 5})
  with pytest.raises(ValueError, match=r"unknown macro TRAIN_STEP .*did you mean --gin.TRAIN_STEPS\?"):
    exp.validate()
  exp = grid.Experiment(gin_files=["gin/runs/quickstart.gin"], strategies=["adapter"], mixtures=["quickstart"])
  with pytest.raises(ValueError, match=r"gin/sharing/adapter.gin' not found .*did you mean gin/sharing/adapters.gin\?"):
    exp.validate()


def _failing_launcher(calls):
  def launch(argv, log_path, env):
    calls.append(argv)
    name = next(a for a in argv if a.startswith("--gin.MIXTURE_OR_TASK_NAME=")).split("=", 1)[1]
    with open(log_path, "a") as log:
      log.write(f"mtl-train: error: unknown task or mixture {name!r}; import the module that registers it\n")
    return 2
  return launch


def test_a_grid_failing_one_config_error_stops_after_three_cells(tmp_path, capsys):
  calls, lines = [], []
  rc = compare_cli.main(["--gin_file=gin/runs/quickstart.gin", "--strategies=hard,soft", "--mixtures=mixA",
                         "--seeds=0,1", "--gin.experiment.tasks={'mixA': ['a', 'b', 'c']}", f"--exp_dir={tmp_path}"],
                        launcher=_failing_launcher(calls), echo=lines.append)
  assert rc == 2 and len(calls) == 3  # of 10 cells
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["mtl-compare: error: 3 cells failed with the same configuration error and 7 were not run: "
                 "unknown task or mixture 'mixA'; import the module that registers it (fix it and run the command "
                 "again; each cell's train.log has the details)"], err
  assert not any("rerun" in l for l in lines)


def test_different_failures_do_not_stop_the_grid(tmp_path):
  rcs = iter([2, 1, 2, 0, 0, 0])
  guard = early_stop.Guard(lambda argv, log, env: next(rcs))
  for k in range(6):
    guard(["x"], tmp_path / f"{k}.log", {})
  assert guard.launched == 6 and not guard.stopped
  assert guard.error() is None


def test_transfer_failing_one_config_error_stops(tmp_path, capsys):
  calls = []
  rc = transfer_cli.main(["--experiment=gin/experiments/transfer_tiny.gin", f"--exp_dir={tmp_path}"],
                         launcher=_failing_launcher(calls), echo=lambda line: None)
  # transfer_tiny: 2 source cells fail; the first stage-2 baseline (no source) fails alike: the rest is not run
  assert rc == 2 and len(calls) == 3
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(
      "mtl-transfer: error: 3 cells failed with the same configuration error and 3 were not run: unknown task"), err


# ------------------------------------------------------------------ end to end (matrix)

TINY = ["--gin_file=gin/models/tiny.gin", "--binding=TASK_FEATURE_LENGTHS={'inputs': 16}", "--binding=BATCH_SIZE=8",
        "--binding=TRAIN_STEPS=2", "--binding=trainer.train.eval_period=2", "--binding=trainer.train.eval_batch_size=256"]


def _in_process(argv, log_path, env):
  return run_cell_in_process(argv)


def readme_own_data():
  """docs/howto/own_data.md: the gin file of its heredoc and the mtl-compare command's arguments."""
  section = (REPO / "docs" / "howto" / "own_data.md").read_text()
  gin_text = re.search(r"cat > /tmp/my_tasks.gin <<'GIN'\n(.*?)\nGIN\n", section, re.S).group(1)
  command = re.search(r"^python -m mtl_jax\.compare .*?(?<!\\)$", section, re.M | re.S).group(0)
  return gin_text, shlex.split(command.replace("\\\n", " "))[3:]


@pytest.mark.matrix
def test_readme_compare_command_on_file_tasks_runs_to_the_end(tmp_path, clean_gin):
  gin_text, args = readme_own_data()
  (tmp_path / "my_tasks.gin").write_text(gin_text)
  args = [a.replace("/tmp/my_tasks.gin", str(tmp_path / "my_tasks.gin")) for a in args
          if not a.startswith(("--exp_dir", "--seeds", "--strategies", "--binding=TRAIN_STEPS"))]
  lines = []
  rc = compare_cli.main([*args, "--strategies=hard", "--seeds=0", *TINY, f"--exp_dir={tmp_path / 'cmp'}"],
                        launcher=_in_process, echo=lines.append)
  assert rc == 0, lines
  assert "mtl-compare: 4 cells: 0 finished, 4 to run (1 at a time)" in lines
  report = (tmp_path / "cmp" / "report.md").read_text()
  for task in ("my_reviews", "my_pairs", "rotten_tomatoes"):
    assert task in report


@pytest.mark.matrix
def test_transfer_grid_over_file_tasks_runs_to_the_end(tmp_path, clean_gin):
  lines = []
  rc = transfer_cli.main([
      "--gin.transfer.gin_files=['gin/runs/quickstart.gin', 'gin/models/tiny.gin', 'gin/tasks/example_files.gin']",
      "--gin.transfer.sources=['file_example_mix']", "--gin.transfer.targets=['file_reviews']",
      "--gin.transfer.bindings={'TASK_FEATURE_LENGTHS': {'inputs': 16}, 'BATCH_SIZE': 8, 'TRAIN_STEPS': 2, "
      "'trainer.train.eval_period': 2, 'trainer.train.eval_batch_size': 256}",
      f"--exp_dir={tmp_path / 'tr'}"], launcher=_in_process, echo=lines.append)
  assert rc == 0, lines
  rows = (tmp_path / "tr" / "transfer_matrix.csv").read_text().splitlines()
  assert rows[0].startswith("source,target,regime,metric,mean,")
  assert {r.split(",")[0] for r in rows[1:] if r.split(",")[1] == "file_reviews"} == {"none", "file_example_mix"}, rows
