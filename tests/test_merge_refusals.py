"""mtl-merge's refusals, each one line naming the run or value, before anything is read or written
(fabricated MODEL_DIRs: run_spec.json, config.gin and committed-looking checkpoint folders; no training)."""

import json

import pytest

from mtl_jax.merge import cli, sources, target


def fake_run(root, name, tasks, pretrained_sha="aaa", init_sha=None, sharing="hard", d_model=32):
  run = root / name
  for item in ("state", "meta"):
    (run / "checkpoints" / "4" / item).mkdir(parents=True)
  (run / "config.gin").write_text("TRAIN_STEPS = 4\n")
  spec = {"sharing": sharing, "tasks": tasks, "num_classes": [2] * len(tasks), "encoder": {"d_model": d_model},
          "pretrained": {"checkpoint": "/ckpt/minilm", "sha256": pretrained_sha} if pretrained_sha else None}
  if init_sha:
    spec["init_from"] = {"model_dir": "/runs/source", "step": 2, "sha256": init_sha}
  (run / "run_spec.json").write_text(json.dumps(spec))
  return run


def one_line_error(argv, capsys) -> str:
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("mtl-merge: error: ") and "\n" not in err, err
  return err


def test_runs_from_different_starting_points_are_refused_naming_the_run(tmp_path, capsys):
  a = fake_run(tmp_path, "a", ["rotten_tomatoes"])
  b = fake_run(tmp_path, "b", ["vader_tweets"], pretrained_sha="bbb")
  err = one_line_error(["--runs", str(a), str(b), "--out", str(tmp_path / "out"), "--method", "ties"], capsys)
  assert f"run '{b}' starts from pretrained /ckpt/minilm (sha256 bbb)" in err and "share one starting point" in err
  c = fake_run(tmp_path, "c", ["vader_tweets"], init_sha="ccc")  # same checkpoint, then another run's trunk
  assert "init_from /runs/source step 2" in one_line_error(
      ["--runs", str(a), str(c), "--out", str(tmp_path / "out"), "--method", "ties"], capsys)
  assert not (tmp_path / "out").exists()


def test_other_refusals(tmp_path):
  a = fake_run(tmp_path, "a", ["rotten_tomatoes"])
  with pytest.raises(ValueError, match="trained from scratch"):
    sources.open_runs([a, fake_run(tmp_path, "s", ["bbc_topic"], pretrained_sha=None)])
  with pytest.raises(ValueError, match="is a 'soft' run"):
    sources.open_runs([a, fake_run(tmp_path, "soft", ["bbc_topic"], sharing="soft")])
  with pytest.raises(ValueError, match="is a lora run of 2 tasks; mtl-merge merges single-task lora runs"):
    sources.open_runs([a, fake_run(tmp_path, "lora2", ["bbc_topic", "vader_tweets"], sharing="lora")])
  with pytest.raises(ValueError, match=r"another architecture .*EncoderConfig.d_model"):
    sources.open_runs([a, fake_run(tmp_path, "wide", ["bbc_topic"], d_model=64)])
  with pytest.raises(ValueError, match="task 'rotten_tomatoes' is in runs"):
    sources.open_runs([a, fake_run(tmp_path, "again", ["rotten_tomatoes"])])
  with pytest.raises(ValueError, match="at least 2 runs"):
    sources.open_runs([a])
  with pytest.raises(ValueError, match="has no run_spec.json"):
    sources.open_runs([a, tmp_path])
  (tmp_path / "taken").mkdir()
  (tmp_path / "taken" / "results.json").write_text("{}")
  with pytest.raises(ValueError, match="already exists and is not an empty directory"):
    target.check_out_dir(tmp_path / "taken")
  with pytest.raises(ValueError, match="--grid 'scaling': write NAME=V1,V2"):
    cli.parse_grid(["scaling"])


def test_a_bad_grid_axis_is_refused_before_any_run_is_read(tmp_path, capsys):
  err = one_line_error(["--runs", "/nowhere/a", "/nowhere/b", "--out", str(tmp_path / "o"), "--method", "ties",
                        "--grid", "drop_rate=0.1"], capsys)
  assert "--grid drop_rate: merge method 'ties' takes density, scaling" in err
  err = one_line_error(["--runs", "/nowhere/a", "/nowhere/b", "--out", str(tmp_path / "o")], capsys)
  assert "no merge method: pass --method NAME or --gin_file=gin/merge/<method>.gin" in err


def test_every_gin_file_binds_a_method_and_a_grid_it_takes():
  from conftest import REPO
  from mtl_jax.merge import base, select, settings
  files = sorted((REPO / "gin" / "merge").glob("*.gin"))
  bound = {settings.from_gin([str(f)]).method: settings.from_gin([str(f)]) for f in files}
  assert set(bound) == set(base.names())  # one gin file per method
  for name, s in bound.items():
    points = select.candidates(base.get(name), s.grid)
    assert len(points) == max(1, int(__import__("numpy").prod([len(v) for v in s.grid.values()])))


def test_a_run_whose_config_imports_a_foreign_module_is_refused_unless_trusted(tmp_path, capsys):
  """Merging parses the runs' config.gin, and gin runs its imports: only this project's modules
  (issue 'The first hour with your own data', item 9), --trust_config to override."""
  a = fake_run(tmp_path, "a", ["rotten_tomatoes"])
  b = fake_run(tmp_path, "b", ["vader_tweets"])
  (b / "config.gin").write_text("import tasks.offline\nimport antigravity_payload\nTRAIN_STEPS = 4\n")
  err = one_line_error(["--runs", str(a), str(b), "--out", str(tmp_path / "out"), "--method", "ties"], capsys)
  assert "antigravity_payload" in err and "--trust_config" in err and f"{b / 'config.gin'}:2" in err
  assert not (tmp_path / "out").exists()
  # trusted: the check the CLI runs with --trust_config lets the file through (gin would then import it)
  from mtl_jax.predict import config_trust
  assert config_trust.check(b / "config.gin", True) is None
  with pytest.raises(ValueError, match="antigravity_payload"):
    config_trust.check(b / "config.gin", False)
