"""mtl-transfer end to end on gin/experiments/transfer_tiny.gin (cells run the real binary's main()
in-process: 2 sources x 2 targets, one small regime), the matrix against the cells' own results,
rerun skips; the matrix arithmetic on hand-written cells; the submitit executor on a 2-cell grid."""

import json
import math

import pytest

from conftest import run_cell_in_process
from mtl_jax.compare import cli as compare_cli
from mtl_jax.compare.grid import Cell
from mtl_jax.transfer import cli, grid, matrix, report
from test_compare_fakes import fake_binary, fake_env

TINY = ["--experiment=gin/experiments/transfer_tiny.gin", "--gin.transfer.regimes={'n64': 64}",
        "--gin.transfer.source_bindings={'TRAIN_STEPS': 4, 'trainer.train.checkpoint_period': 4}",
        "--gin.transfer.target_bindings={'TRAIN_STEPS': 3, 'trainer.train.checkpoint_period': 3}"]


def in_process(calls):
  def launch(argv, log_path, env):
    calls.append(argv)
    return run_cell_in_process(argv)
  return launch


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_tiny_grid_end_to_end_writes_every_file_and_rerun_skips(tmp_path):
  exp_dir, calls, lines = tmp_path / "exp", [], []
  assert cli.main([*TINY, f"--exp_dir={exp_dir}"], launcher=in_process(calls), echo=lines.append) == 0
  assert len(calls) == 2 + 2 * 3  # 2 sources; 2 targets x (none + 2 sources)
  for name in ("transfer_matrix.csv", "transfer_matrix.json", "report.md", "experiment.json", "plots/gain_n64.png"):
    assert (exp_dir / name).stat().st_size > 0, name

  runs = exp_dir / "runs"
  stage2 = json.loads((runs / "target__vader_movie__to__bbc_topic__n64__seed0" / "run_spec.json").read_text())
  assert stage2["init_from"]["model_dir"] == str(runs / "source__vader_movie__seed0")
  assert stage2["train_example_limit"]["limit"] == 64 and stage2["tasks"] == ["bbc_topic"]
  assert json.loads((runs / "target__none__to__bbc_topic__n64__seed0" / "run_spec.json").read_text()).get(
      "init_from") is None

  table = json.loads((exp_dir / "transfer_matrix.json").read_text())["matrix"]
  assert len(table) == 6
  def headline(cell_id):  # the held-out test split of the checkpoint validation selected (run/held_out.py)
    record = json.loads((runs / cell_id / "results.json").read_text())
    return record["test"][cell_id.split("__")[3]]["headline"]
  for row in table:
    got = headline(f"target__{row['source']}__to__{row['target']}__n64__seed0")
    assert row["mean"] == pytest.approx(got) and row["n"] == 1
    if row["source"] != "none":
      base = headline(f"target__none__to__{row['target']}__n64__seed0")
      assert row["gain"] == pytest.approx(got - base)
  report = (exp_dir / "report.md").read_text()
  assert "| bbc_topic | rotten_tomatoes | f1_macro |" in report and "gain_n64.png" in report
  csv_rows = (exp_dir / "transfer_matrix.csv").read_text().splitlines()
  assert csv_rows[0].startswith("source,target,regime,metric,mean,std,n,baseline_mean") and len(csv_rows) == 7

  calls.clear()
  lines.clear()
  assert cli.main([*TINY, f"--exp_dir={exp_dir}"], launcher=in_process(calls), echo=lines.append) == 0
  assert calls == [] and any("4 cells: 4 finished, 0 to run" in l for l in lines)  # sources + baselines


def _fake_cell(exp_dir, cell: Cell, value: float):
  model_dir = exp_dir / "runs" / cell.cell_id
  for item in ("state", "meta"):  # its final checkpoint, committed: a finished cell
    (model_dir / "checkpoints" / str(cell.train_steps()) / item).mkdir(parents=True)
  (model_dir / "results.json").write_text(json.dumps(
      {"step": cell.train_steps(), "tasks": {cell.mixture: {"mse": value, "headline": value}}}))


def test_matrix_gain_std_and_noise_marks_on_hand_written_cells(tmp_path):
  exp = grid.TransferExperiment(gin_files=["gin/base.gin"], sources=["a", "b"], targets=["t"], seeds=[0, 1],
                                target_bindings={"TRAIN_STEPS": 5})
  cells = exp.target_cells(lambda c: tmp_path / c.cell_id)
  # the headline is an mse (lower is better): scores are flipped, so a lower mse is a positive gain
  mse = {("none", 0): 0.30, ("none", 1): 0.10, ("a", 0): 0.19, ("a", 1): 0.19, ("b", 0): 0.02, ("b", 1): 0.04}
  for cell in cells:
    _fake_cell(tmp_path, cell, mse[cell.axes_dict["source"], cell.seed])
  per_cell, rows = matrix.rows(cells, tmp_path)
  assert len(per_cell) == 6
  by = {r["source"]: r for r in rows}
  base_std = math.sqrt(2 * 0.1 ** 2)  # sample std of (-0.30, -0.10)
  assert by["none"]["mean"] == pytest.approx(-0.20) and by["none"]["std"] == pytest.approx(base_std)
  assert by["none"]["gain"] is None
  # paired over seeds: a - none = (+0.11, -0.09), b - none = (+0.28, +0.06); t on 1 df is Cauchy:
  # two-sided p = 1 - (2/pi) atan|t| with t = 0.01 / 0.1 and 0.17 / 0.11; Holm over the 2 rows
  p_a, p_b = (1 - 2 / math.pi * math.atan(t) for t in (0.1, 0.17 / 0.11))
  assert by["a"]["gain"] == pytest.approx(0.01) and by["a"]["p"] == pytest.approx(p_a)
  assert by["b"]["gain"] == pytest.approx(0.17) and by["b"]["p"] == pytest.approx(p_b)
  assert by["b"]["p_adj"] == pytest.approx(2 * p_b) and by["a"]["p_adj"] == pytest.approx(max(p_a, 2 * p_b))
  assert by["a"]["direction"] == by["b"]["direction"] == 0 and by["b"]["p_perm"] == pytest.approx(0.5)
  assert by["b"]["detectable"] > 0.17 and by["none"]["p"] is None
  assert (by["b"]["gain_ci_low"], by["b"]["gain_ci_high"]) == pytest.approx(
      (0.17 - 12.706204736174707 * 0.11, 0.17 + 12.706204736174707 * 0.11))  # t_{0.975, 1} from tables
  md = report.markdown(exp.to_json(), rows, [], [], tmp_path)
  assert "| t | b | mse | -0.030 ± 0.127 | 2 | +0.170 [-1.228, +1.568] n.s. | 0.366 | 0.5 | 0.731 |" in md
  assert "How the numbers were computed:" in md and "0.5 with n = 2" in md and "≈" not in md
  # at a glance: the baseline's own score, then each source's gain (no mark: neither is Holm-significant)
  assert "| source ↓ target → | t |\n|---|---|\n| none (score) | -0.200 |\n| a | +0.010 |\n| b | +0.170 |" in md
  assert report.glance([{**by["b"], "direction": -1}], by["b"]["regime"])[3] == "| b | +0.170 ▼ |"
  assert by["b"]["metric"] == "mse"


def test_bad_transfer_config_is_one_line(tmp_path, capsys):
  assert cli.main([*TINY, f"--exp_dir={tmp_path}", "--gin.transfer.sources=['none']"]) == 2
  assert "'none' is the baseline's label" in capsys.readouterr().err
  assert cli.main([*TINY, f"--exp_dir={tmp_path}", "--gin.transfer.source_sharing='sluice'"]) == 2
  assert "set transfer.init_task" in capsys.readouterr().err
  assert cli.main([*TINY, f"--exp_dir={tmp_path}", "--gin.transfer.regimes={'tiny': 0}"]) == 2
  assert "transfer.regimes['tiny'] = 0" in capsys.readouterr().err
  lines = []
  assert cli.main([*TINY, f"--exp_dir={tmp_path}", "--dry_run"], echo=lines.append) == 0
  assert lines[-1] == "mtl-transfer: 8 cells, 8 to run (2 source cells, 6 target cells)"
  assert any("--gin.init_from.model_dir=" in l and "--gin.input_pipeline.train_example_limit.limit=64" in l
             for l in lines)


def test_submitit_local_executor_runs_a_two_cell_grid(tmp_path):
  pytest.importorskip("submitit")
  binary, counter = fake_binary(tmp_path)
  exp_dir = tmp_path / "exp"
  argv = ["--gin_file=gin/base.gin", "--strategies=hard,sluice", "--mixtures=mixA", "--seeds=0", "--no_baselines",
          "--binding=TRAIN_STEPS=10", f"--exp_dir={exp_dir}", f"--gin.experiment.binary={list(binary)!r}",
          "--gin.experiment.tasks={'mixA': ['taskA', 'taskB']}", "--executor=submitit",
          "--submitit_cluster=local", "--job_param=timeout_min=5", "--parallel=2"]
  lines = []
  assert compare_cli.main(argv, env=fake_env(tmp_path), echo=lines.append) == 0, lines
  assert sorted(counter.read_text().splitlines()) == sorted(str(exp_dir / "runs" / c) for c in
                                                            ("hard__mixA__seed0", "sluice__mixA__seed0"))
  jobs = list((exp_dir / "submitit").glob("*/*_result.pkl"))
  assert len(jobs) == 2  # each cell ran as its own submitit job
  assert (exp_dir / "results.csv").stat().st_size > 0


def test_prefinetune_mixtures_hold_out_the_targets_and_the_experiment_expands():
  import seqio
  from tasks import offline_families
  tasks_of = lambda name: sorted(t.name for t in seqio.get_mixture_or_task(name).tasks)
  large = tasks_of("pft_all_but_targets")
  assert len(large) == 6 and not set(large) & set(offline_families.TARGETS)
  assert tasks_of("pft_family_rotten_tomatoes") == ["vader_amazon", "vader_movie", "vader_nyt", "vader_tweets"]
  assert tasks_of("pft_family_bbc_topic") == ["chatterbot_intent"]
  exp = grid.load(["gin/experiments/prefinetune_minilm.gin"])
  exp.validate()
  targets = exp.target_cells(lambda c: c.cell_id)
  assert len(exp.source_cells()) == 9 and len(targets) == 36
  assert {c.axes_dict["source"] for c in targets if c.mixture == "bbc_topic"} == {
      "none", "pft_all_but_targets", "pft_family_bbc_topic"}
