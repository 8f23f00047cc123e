"""init_from: a run's trunk starts from another run's checkpoint (values compared), across strategies,
records it, refuses a resume from another source, and resumes exactly (in-process, 8 fake devices)."""

import json

import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

from mtl_jax.scale import partitioning
from mtl_jax.run import starting_point, trainer
from mtl_jax import train
from mtl_jax.step import steps as steps_lib
from mtl_jax.models.multitask import build_model
from mtl_jax.pretrained import settings
from mtl_jax.transfer import init_from

pytestmark = pytest.mark.xdist_group("transfer_init_from")  # one worker under -n: the two source runs are trained once

BASE = ["--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.BATCH_SIZE=24", "--gin.TRAIN_STEPS=2",
        "--gin.trainer.train.eval_batch_size=512", "--gin.trainer.train.checkpoint_period=2"]
QUICK = ["bbc_topic", "rotten_tomatoes", "vader_tweets"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
  """Two finished 2-step source runs on the quickstart mixture: sluice and soft."""
  root = tmp_path_factory.mktemp("sources")
  out = {}
  for sharing in ("sluice", "soft"):
    out[sharing] = root / sharing
    assert train.main([*BASE, f"--gin_file=gin/sharing/{sharing}.gin", f"--gin.MODEL_DIR={out[sharing]}"]) == 0
  return out


def _target_params(source_dir, sharing, task, num_classes=(2,)):
  """A fresh target model of `sharing` initialised through FromRun (what the trainer does)."""
  start = starting_point.FromRun(init_from.InitFrom(model_dir=str(source_dir), task=task), settings.Pretrained())
  config = start.encoder_config(init_from.encoder_config(start.spec).vocab_size)
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = steps_lib.Steps(build_model(config, sharing, num_classes), optax.adam(1e-3),
                          ["classification"] * len(num_classes), mesh, partitioning.logical_axis_rules(), 0, 8, 16)
  return traverse_util.flatten_dict(jax.device_get(start.init_state(steps).params), sep="/"), start


def _source_flat(source_dir):
  params, _ = init_from.restore_params(source_dir)
  return traverse_util.flatten_dict(jax.device_get(params), sep="/")


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_sluice_column_into_hard_and_soft_mean_into_sluice_copy_exact_values(sources):
  src = _source_flat(sources["sluice"])
  column = QUICK.index("rotten_tomatoes")
  got, start = _target_params(sources["sluice"], "hard", "rotten_tomatoes")
  checked = 0
  for path, value in got.items():
    key = init_from.trunk_key(path)
    if key is None:
      continue
    matches = [p for p in src if init_from.trunk_key(p) == key]
    assert len(matches) == 1, (key, matches)
    want = src[matches[0]] if key.startswith("embedder/") else src[matches[0]][column]
    np.testing.assert_array_equal(value, want, err_msg=path)
    checked += 1
  assert checked == 2 + 2 * 16 + 2  # embedder (token, position), 2 layers x 16 tensors, ln_final
  assert start.record["init_from"]["task"] == "rotten_tomatoes" and start.record["init_from"]["step"] == 2

  soft = _source_flat(sources["soft"])
  got, _ = _target_params(sources["soft"], "sluice", "mean", num_classes=(2, 3))
  layer = "trunk/sluice/layer_1/mlp/wi/kernel"
  tower = soft["trunk/tied/layers/layer_1/mlp/wi/kernel"]
  assert tower.shape[0] == 3 and not np.allclose(tower[0], tower[1])  # trained towers differ
  np.testing.assert_allclose(got[layer], np.broadcast_to(tower.mean(0), got[layer].shape), rtol=0, atol=0)
  np.testing.assert_array_equal(got["trunk/sluice/ln_final/scale"][1], soft["trunk/shared/ln_final/LayerNorm_0/scale"])
  assert not any(k.startswith("heads/") and k in soft and got[k].shape == soft[k].shape and
                 np.array_equal(got[k], soft[k]) for k in got)  # heads are fresh


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_per_task_source_needs_a_named_trunk(sources):
  with pytest.raises(ValueError, match="set init_from.task to one of bbc_topic, rotten_tomatoes, vader_tweets or 'mean'"):
    _target_params(sources["sluice"], "hard", None)
  with pytest.raises(ValueError, match="'nope'"):
    _target_params(sources["sluice"], "hard", "nope")
  with pytest.raises(ValueError, match="no checkpoint at step 7; saved steps: \\[2\\]"):
    init_from.restore_params(sources["sluice"], 7)


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_target_trains_records_refuses_other_source_and_resumes_exactly(sources, tmp_path, capsys, monkeypatch):
  source = [f"--gin.init_from.model_dir={sources['sluice']}", "--gin.init_from.task=bbc_topic"]
  target = [*BASE, "--gin.MIXTURE_OR_TASK_NAME=vader_movie", "--gin.TRAIN_STEPS=4", *source]
  straight, split = tmp_path / "straight", tmp_path / "split"
  assert train.main([*target, f"--gin.MODEL_DIR={straight}"]) == 0
  calls = iter([False, True])  # a preemption signal seen after step 2: checkpoint, exit 0
  with monkeypatch.context() as patch:
    patch.setattr(trainer._Preemption, "requested", lambda self: next(calls, False))
    assert train.main([*target, f"--gin.MODEL_DIR={split}"]) == 0
  assert sorted(int(p.name) for p in (split / "checkpoints").iterdir() if p.name.isdigit()) == [2]
  spec = json.loads((split / "run_spec.json").read_text())
  assert spec["tasks"] == ["vader_movie"] and spec["init_from"]["model_dir"] == str(sources["sluice"])
  assert spec["init_from"]["sharing"] == "sluice" and len(spec["init_from"]["sha256"]) == 64

  before = sorted(p.name for p in split.iterdir())
  other = [*BASE, "--gin.MIXTURE_OR_TASK_NAME=vader_movie", f"--gin.init_from.model_dir={sources['soft']}",
           "--gin.init_from.task=bbc_topic", f"--gin.MODEL_DIR={split}"]
  capsys.readouterr()
  assert train.main(other) == 2
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert "init_from" in line and str(sources["soft"]) in line, line
  assert sorted(p.name for p in split.iterdir()) == before

  assert train.main([*target, f"--gin.MODEL_DIR={split}"]) == 0  # resume 2 -> 4
  assert "resuming from checkpoint at step 2" in capsys.readouterr().out
  a, b = (json.loads((d / "results.json").read_text()) for d in (straight, split))
  assert a["step"] == b["step"] == 4 and a["tasks"] == b["tasks"]
  pa, pb = (traverse_util.flatten_dict(jax.device_get(init_from.restore_params(d)[0]), sep="/")
            for d in (straight, split))
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_tokenizer_mismatch_is_refused(sources):
  with pytest.raises(ValueError, match="was started from scratch but this run from .*drop pretrained.checkpoint"):
    starting_point.FromRun(init_from.InitFrom(model_dir=str(sources["soft"]), task="mean"),
                           settings.Pretrained(checkpoint="all-MiniLM-L6-v2"))
