"""mtl-compare end to end with the fake train binary: a 2x2x2 grid, parallel launches,
rerun skips finished cells, resumes unfinished ones, failures are reported."""

import pathlib

from test_compare_fakes import fake_binary, fake_env
from test_compare_report import png_size

from mtl_jax.compare import cli


def _argv(tmp_path, binary, *extra):
  strategy = tmp_path / "sluice.gin"  # a strategy given as a gin file (label: its stem)
  strategy.write_text("# fake strategy\n")
  return ["--gin_file=gin/base.gin", f"--strategies=hard,{strategy}", "--mixtures=synthetic_r0_t2,synthetic_r100_t2",
          "--seeds=0,1", "--binding=TRAIN_STEPS=10", f"--exp_dir={tmp_path / 'exp'}", "--name=fake2x2x2",
          f"--gin.experiment.binary={list(binary)!r}", *extra]


def _launches(counter: pathlib.Path) -> list:
  return counter.read_text().splitlines() if counter.exists() else []


def test_2x2x2_grid_end_to_end_then_rerun_skips(tmp_path):
  binary, counter = fake_binary(tmp_path)
  env = fake_env(tmp_path)
  lines = []
  assert cli.main(_argv(tmp_path, binary, "--parallel=2"), env=env, echo=lines.append) == 0
  # 2 strategies x 2 mixtures x 2 seeds + 2 mixtures x 2 tasks x 2 seeds baselines
  assert len(_launches(counter)) == 8 + 8
  exp = tmp_path / "exp"
  for name in ("results.csv", "results.json", "report.md", "experiment.json"):
    assert (exp / name).stat().st_size > 0
  pngs = sorted(p.name for p in (exp / "plots").glob("*.png"))
  assert pngs == sorted(["bars__synthetic_r0_t2.png", "bars__synthetic_r100_t2.png", "curves__synthetic_r0_t2.png",
                         "curves__synthetic_r100_t2.png", "delta_m_vs_relatedness__t2.png",
                         "mixing__sluice__synthetic_r0_t2__sluice_alpha.png",
                         "mixing__sluice__synthetic_r0_t2__sluice_beta.png",
                         "mixing__sluice__synthetic_r100_t2__sluice_alpha.png",
                         "mixing__sluice__synthetic_r100_t2__sluice_beta.png"])
  for p in (exp / "plots").glob("*.png"):
    assert min(png_size(p)) >= 250
  assert any("16 to run" in line for line in lines)

  lines.clear()
  assert cli.main(_argv(tmp_path, binary), env=env, echo=lines.append) == 0
  assert len(_launches(counter)) == 16  # nothing launched the second time
  assert any("16 cells: 16 finished, 0 to run" in line for line in lines)

  # an unfinished cell (results.json before the final step) is launched again, alone
  results = exp / "runs" / "hard__synthetic_r0_t2__seed1" / "results.json"
  results.write_text(results.read_text().replace('"step": 10', '"step": 5'))
  assert cli.main(_argv(tmp_path, binary), env=env, echo=lines.append) == 0
  assert _launches(counter)[16:] == [str(results.parent)]


def test_failed_cell_is_reported_and_exit_status_is_1(tmp_path):
  binary, counter = fake_binary(tmp_path)
  env = fake_env(tmp_path, FAKE_FAIL="single__synthetic_r100_t2_task1__seed0")
  lines = []
  assert cli.main(_argv(tmp_path, binary, "--seeds=0"), env=env, echo=lines.append) == 1
  md = (tmp_path / "exp" / "report.md").read_text()
  assert "## Failed cells" in md and "single__synthetic_r100_t2_task1__seed0" in md
  assert "No finished single-task baseline for synthetic_r100_t2_task1: Δm unknown." in md
  assert any("failed single__synthetic_r100_t2_task1__seed0" in line and "fake failure" in line for line in lines)


def test_dry_run_and_bad_config(tmp_path, capsys):
  binary, counter = fake_binary(tmp_path)
  lines = []
  assert cli.main(_argv(tmp_path, binary, "--dry_run"), echo=lines.append) == 0
  assert len(lines) == 17 and lines[-1] == "mtl-compare: 16 cells, 16 to run" and not counter.exists()
  assert cli.main(["--gin_file=gin/base.gin", "--mixtures=quickstart", "--strategies=hard",
                   f"--exp_dir={tmp_path}", "--seeds=0,0"]) == 2
  assert "mtl-compare: error: experiment.seeds has duplicates: [0, 0]" in capsys.readouterr().err
