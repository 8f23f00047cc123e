"""python -m mtl_jax.input.data_stats: split sizes, label distribution, token lengths, mixing rates."""

import json

import pytest

import tasks.synthetic  # noqa: F401
from mtl_jax.input import data_stats


pytestmark = pytest.mark.usefixtures("clean_gin")  # conftest: gin cleared around every test


def test_stats_of_a_synthetic_mixture():
  record = data_stats.stats("synthetic_r50_t2")
  assert record["rates"] == pytest.approx({"synthetic_r50_t2_task0": .5, "synthetic_r50_t2_task1": .5})
  task = record["tasks"]["synthetic_r50_t2_task0"]
  assert task["kind"] == "classification" and task["vocab_size"] == 203
  assert {s: v["examples"] for s, v in task["splits"].items()} == {"train": 2000, "validation": 500, "test": 500}
  train = task["splits"]["train"]
  assert set(train["labels"]) == {"class0", "class1"} and sum(train["labels"].values()) == 2000
  assert 0.4 < train["labels"]["class0"] / 2000 < 0.6
  # 8..24 words + EOS, one token per word
  assert 15 <= train["length"]["p50"] <= 19 and train["length"]["p99"] <= 25 == train["length"]["max"]


def test_cli_table_json_and_gin(capsys):
  assert data_stats.main(["synthetic_r0_t2", "--module", "tasks.synthetic"]) == 0
  out = capsys.readouterr().out
  assert "synthetic_r0_t2_task1  kind=classification" in out and "n=2000" in out
  assert "p50=" in out and "p90=" in out and "p99=" in out and "effective mixing rates" in out
  assert data_stats.main(["synthetic_r0_t2", "--module", "tasks.synthetic", "--json",
                          "--gin_file", "gin/mixing/equal.gin"]) == 0
  record = json.loads(capsys.readouterr().out)
  assert record["rates"] == pytest.approx({"synthetic_r0_t2_task0": .5, "synthetic_r0_t2_task1": .5})


def test_tagging_and_regression_stats():
  import tasks.offline  # noqa: F401
  from mtl_jax.input import input_pipeline as ip
  wnut = data_stats.split_stats(ip.get_provider("wnut16_ner"), "validation")
  assert wnut["examples"] == 222 and 0.9 < wnut["tags"]["O"] / sum(wnut["tags"].values()) < 0.99
  assert "B-person" in wnut["tags"] and wnut["length"]["p99"] < 128
  vader = data_stats.split_stats(ip.get_provider("vader_tweets"), "test")
  assert vader["examples"] == 398 and -1 <= vader["score"]["min"] < 0 < vader["score"]["max"] <= 1


def test_unknown_name(capsys):
  assert data_stats.main(["synthetic_r33_t2", "--module", "tasks.synthetic"]) == 2
  assert "unknown task or mixture" in capsys.readouterr().err
