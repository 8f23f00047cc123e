"""mtl-merge end to end on tiny runs (matrix: ~90 CPU-s): two single-task runs fine-tuned from one init_from
source merged by task arithmetic. The merged trunk equals theta_0 + lambda sum_i (theta_i - theta_0) from the
runs' own checkpoints, each head is its run's; mtl-predict reads the MODEL_DIR and its accuracy equals
results.json's; mtl-train on the merged config.gin resumes it and evaluates to the same numbers; a run
started from another point of the source is refused in one line naming it."""

import json

import numpy as np
import pytest
from flax import traverse_util

from conftest import ONE_DEVICE, run_main
from mtl_jax.merge import cli
from mtl_jax.transfer import init_from

pytestmark = [pytest.mark.matrix, pytest.mark.xdist_group("merge_e2e")]

BASE = ["--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin", ONE_DEVICE,
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.BATCH_SIZE=16", "--gin.TRAIN_STEPS=2",
        "--gin.trainer.train.eval_batch_size=256", "--gin.trainer.train.checkpoint_period=1",
        "--gin.trainer.train.eval_period=2", "--gin.make_optimizer.learning_rate=0.05",
        "--gin.make_optimizer.warmup_steps=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("merge")
  run_main(*BASE, f"--gin.MODEL_DIR='{root / 'source'}'")
  out = {"root": root, "source": root / "source"}
  for task, step in (("rotten_tomatoes", "'latest'"), ("vader_tweets", "'latest'"), ("bbc_topic", 1)):
    out[task] = root / task
    run_main(*BASE, f"--gin.MIXTURE_OR_TASK_NAME='{task}'", "--gin.TRAIN_STEPS=3",
             f"--gin.init_from.model_dir='{out['source']}'", f"--gin.init_from.step={step}",
             f"--gin.MODEL_DIR='{out[task]}'")
  out["lora"] = root / "lora"  # a single-task lora run on the same starting point: its update is its task vector
  run_main(*BASE, "--gin_file=gin/sharing/lora.gin", "--gin.MIXTURE_OR_TASK_NAME='bbc_topic'", "--gin.TRAIN_STEPS=3",
           "--gin.lora.rank=4", "--gin.param_groups.rules=[]", f"--gin.init_from.model_dir='{out['source']}'",
           f"--gin.MODEL_DIR='{out['lora']}'")
  return out


def flat(model_dir):
  return traverse_util.flatten_dict(init_from.restore_params(model_dir)[0], sep="/")


def test_task_arithmetic_merge_is_an_ordinary_run(runs, capsys):
  out = runs["root"] / "merged"
  members = [runs["rotten_tomatoes"], runs["vader_tweets"]]
  assert cli.main(["--runs", *map(str, members), "--out", str(out), "--method", "task_arithmetic",
                   "--grid", "scaling=0.4,0.8"]) == 0
  printed = capsys.readouterr().out
  merge = json.loads((out / "merge.json").read_text())
  lam = merge["hparams"]["scaling"]
  assert lam in (0.4, 0.8) and len(merge["grid"]) == 2 and "picked task_arithmetic" in printed
  results = json.loads((out / "results.json").read_text())
  assert results["test"].keys() == {"rotten_tomatoes", "vader_tweets"}  # the pick on the test split, as any run's
  assert merge["test_average"] == results["test_average"] and results["selected_by"].startswith("validation")
  spec = json.loads((out / "run_spec.json").read_text())
  assert spec["tasks"] == ["rotten_tomatoes", "vader_tweets"] and spec["sharing"] == "hard"
  assert spec["merge"]["method"] == "task_arithmetic" and len(spec["merge"]["sources"]) == 2

  theta0, thetas, got = flat(runs["source"]), [flat(m) for m in members], flat(out)
  for path in got:
    if path.startswith("heads/"):
      continue
    want = np.asarray(theta0[path], np.float64) + lam * sum(np.asarray(t[path], np.float64) - theta0[path]
                                                            for t in thetas)
    np.testing.assert_allclose(got[path], want, rtol=1e-5, atol=1e-6, err_msg=path)
  assert not np.allclose(got["trunk/trunk/layer_0/mlp/wi/kernel"], theta0["trunk/trunk/layer_0/mlp/wi/kernel"])
  np.testing.assert_array_equal(got["heads/kernel"][0, :, :2], thetas[0]["heads/kernel"][0])  # rotten_tomatoes
  np.testing.assert_array_equal(got["heads/kernel"][1, :, :1], thetas[1]["heads/kernel"][0])  # vader_tweets

  # mtl-predict: its labels on the validation texts score what results.json says
  from mtl_jax import predict
  from tasks import offline
  predictor = predict.load(out)
  examples = offline.examples("rotten_tomatoes", "validation")
  labels = [r["rotten_tomatoes"]["label"] for r in predictor.predict([e["text"] for e in examples],
                                                                     tasks=["rotten_tomatoes"])]
  names = predictor.infos["rotten_tomatoes"].label_names
  accuracy = np.mean([names.index(l) == e["label"] for l, e in zip(labels, examples)])
  assert accuracy == pytest.approx(results["tasks"]["rotten_tomatoes"]["accuracy"], abs=1e-9)

  # mtl-train on the merged config.gin: resumes at the final step and evaluates the same numbers, test included
  run_main(f"--gin_file={out / 'config.gin'}", ONE_DEVICE)
  again = json.loads((out / "results.json").read_text())
  assert again["average"] == pytest.approx(results["average"], abs=1e-9)
  assert again["test_average"] == pytest.approx(results["test_average"], abs=1e-9)


def test_a_run_from_another_starting_point_is_refused(runs, capsys):
  out = runs["root"] / "refused"
  assert cli.main(["--runs", str(runs["rotten_tomatoes"]), str(runs["bbc_topic"]), "--out", str(out),
                   "--method", "ties"]) == 2
  err = capsys.readouterr().err.strip()
  assert "\n" not in err and f"run '{runs['bbc_topic']}' starts from init_from {runs['source']} step 1" in err
  assert not out.exists()


def test_a_lora_run_merges_by_its_low_rank_update(runs):
  from mtl_jax.merge import base
  from mtl_jax.pretrained import lora_merge
  out = runs["root"] / "merged_lora"
  assert cli.main(["--runs", str(runs["rotten_tomatoes"]), str(runs["lora"]), "--out", str(out), "--method", "ties",
                   "--grid", "density=0.5", "--grid", "scaling=1.0", "--no_test"]) == 0
  got, theta0, hard = flat(out), flat(runs["source"]), flat(runs["rotten_tomatoes"])
  params, _ = init_from.restore_params(runs["lora"])
  folded = traverse_util.flatten_dict(lora_merge.merged_params(params, 0, 16.0), sep="/")  # gin's lora.alpha
  by_key = {init_from.trunk_key(p): v for p, v in folded.items() if init_from.trunk_key(p)}
  for path in ("trunk/trunk/layer_0/attention/query_kernel", "trunk/trunk/layer_1/attention/value_kernel",
               "trunk/trunk/layer_0/mlp/wi/kernel"):
    lora_model = by_key[init_from.trunk_key(path)]
    want = base.merge("ties", {path: theta0[path]}, [{path: hard[path]}, {path: lora_model}], density=0.5,
                      scaling=1.0)[path]
    np.testing.assert_allclose(got[path], want, rtol=1e-5, atol=1e-7, err_msg=path)
  tau = by_key["layer_0/attention/query_kernel"] - theta0["trunk/trunk/layer_0/attention/query_kernel"]
  assert np.abs(tau).max() > 0 and np.linalg.matrix_rank(tau.reshape(tau.shape[0], -1), tol=1e-6) <= 4
  np.testing.assert_array_equal(by_key["layer_0/mlp/wi/kernel"], theta0["trunk/trunk/layer_0/mlp/wi/kernel"])
  np.testing.assert_array_equal(got["heads/kernel"][0, :, :5], params["heads"]["kernel"][0])  # bbc_topic's head
