"""mtl-transfer --seeds_per_step=K (compare/seed_groups.py wired into transfer/cli.py): sources and
baselines launch K seeds per trainer, and so do targets with a source: init_from.model_dir is passed as a
'{seed}' template, each lane starting from its own seed's source run (run/starting_point.for_run). Same
cells, same matrix as without the option. An in-process fake trainer (test_compare_seeds_per_step.FakeTrainer), no training."""

import pytest

from mtl_jax.transfer import cli

from test_compare_seeds_per_step import FakeTrainer


def _argv(exp_dir, *extra):
  return ["--experiment=gin/experiments/transfer_tiny.gin", "--gin.transfer.sources=['rotten_tomatoes']",
          "--gin.transfer.targets=['vader_tweets']", "--gin.transfer.regimes={'full': None}",
          "--gin.transfer.seeds=[0, 1, 2]", "--gin.transfer.source_bindings={'TRAIN_STEPS': 4}",
          "--gin.transfer.target_bindings={'TRAIN_STEPS': 3}", f"--exp_dir={exp_dir}", *extra]


def test_seeds_per_step_groups_sources_and_baselines_and_gives_the_same_matrix(tmp_path):
  plain, grouped = FakeTrainer(), FakeTrainer()
  quiet = lambda _: None
  assert cli.main(_argv(tmp_path / "plain"), launcher=plain, env={}, echo=quiet) == 0
  lines = []
  assert cli.main(_argv(tmp_path / "grouped", "--seeds_per_step=2"), launcher=grouped, env={},
                  echo=lines.append) == 0
  assert plain.launches == [("seed", [s]) for s in (0, 1, 2)] * 3  # sources, baselines, targets
  # stage 1: the source's seeds 0+1 in one trainer, seed 2 alone, then the 'none' baseline beside it the
  # same way; stage 2: the targets from rotten_tomatoes, their source a '{seed}' template
  assert grouped.launches == [("seeds", [0, 1]), ("seed", [2])] * 3
  stage1 = lines.index(next(line for line in lines if "stage 1" in line))
  stage2 = lines.index(next(line for line in lines if "stage 2" in line))
  assert any("6 to run as 4 launches of up to 2 seeds" in line for line in lines[stage1:stage2]), lines
  assert any("3 to run as 2 launches of up to 2 seeds" in line for line in lines[stage2:]), lines
  sources = [s for s in grouped.init_from if s]
  assert sources == [str(tmp_path / "grouped" / "runs" / "source__rotten_tomatoes__seed{seed}"),
                     str(tmp_path / "grouped" / "runs" / "source__rotten_tomatoes__seed2")], grouped.init_from
  assert [s for s in plain.init_from if s] == [
      str(tmp_path / "plain" / "runs" / f"source__rotten_tomatoes__seed{s}") for s in (0, 1, 2)]
  dirs = lambda root: sorted(p.name for p in (root / "runs").iterdir())
  assert dirs(tmp_path / "plain") == dirs(tmp_path / "grouped") and len(dirs(tmp_path / "plain")) == 9
  csv_text = (tmp_path / "plain" / "transfer_matrix.csv").read_text()
  assert "rotten_tomatoes" in csv_text and csv_text == (tmp_path / "grouped" / "transfer_matrix.csv").read_text()
  again = FakeTrainer()  # each cell recorded with its own arguments: without the option, all finished
  assert cli.main(_argv(tmp_path / "grouped"), launcher=again, env={}, echo=quiet) == 0
  assert again.launches == []


def test_sources_per_step_trains_a_target_from_several_sources_in_one_trainer(tmp_path):
  """--sources_per_step=2 with K=3: vader_tweets from rotten_tomatoes and from bbc_topic, 3 seeds each, is ONE
  launch of 6 lanes, each lane writing its own cell's directory and starting from its own seed's source run."""
  argv = lambda d, *extra: [*_argv(d, *extra), "--gin.transfer.sources=['rotten_tomatoes', 'bbc_topic']"]
  plain, lanes = FakeTrainer(), FakeTrainer()
  assert cli.main(argv(tmp_path / "plain"), launcher=plain, env={}, echo=lambda _: None) == 0
  lines = []
  assert cli.main(argv(tmp_path / "lanes", "--seeds_per_step=3", "--sources_per_step=2"), launcher=lanes, env={},
                  echo=lines.append) == 0
  assert lanes.launches == [("seeds", [0, 1, 2])] * 3 + [("seeds", [0, 1, 2, 0, 1, 2])], lanes.launches
  assert any("6 to run as 1 launches of up to 3 seeds x 2 sources" in line for line in lines), lines
  runs = tmp_path / "lanes" / "runs"
  assert lanes.init_from[-1] == [str(runs / f"source__{s}__seed{k}") for s in ("bbc_topic", "rotten_tomatoes")
                                 for k in (0, 1, 2)]
  dirs = lambda root: sorted(p.name for p in (root / "runs").iterdir())
  assert dirs(tmp_path / "plain") == dirs(tmp_path / "lanes") and len(dirs(tmp_path / "plain")) == 15
  assert ((tmp_path / "plain" / "transfer_matrix.csv").read_text()
          == (tmp_path / "lanes" / "transfer_matrix.csv").read_text())
  again = FakeTrainer()  # the cells carry their own arguments: found finished without the options
  assert cli.main(argv(tmp_path / "lanes"), launcher=again, env={}, echo=lambda _: None) == 0
  assert again.launches == []


@pytest.mark.parametrize("value", ["0", "-1"])
def test_bad_seeds_per_step_is_refused_in_one_line_and_writes_nothing(tmp_path, capsys, value):
  assert cli.main(_argv(tmp_path / "exp", f"--seeds_per_step={value}"), launcher=FakeTrainer(), env={}) == 2
  err = capsys.readouterr().err.strip()
  assert err == f"mtl-transfer: error: transfer.seeds_per_step must be an int >= 1 (--seeds_per_step), got {value}"
  assert not (tmp_path / "exp").exists()
