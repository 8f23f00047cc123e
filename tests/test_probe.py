"""Probes: L-BFGS logistic regression / ridge equal scikit-learn's on the same features; the scalar
mix finds the informative layer; featurized layers equal an independent encoder pass; the CLI
writes its curves (tiny random checkpoint, real offline task)."""

import csv

import numpy as np
import pytest

from mtl_jax.probe import cli, featurize, models
from pretrained_fixtures import write_tiny_checkpoint


def _classification(n=300, d=12, c=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x @ rng.normal(size=(d, c)) + rng.normal(size=(n, c))).argmax(1)
  return x, y


@pytest.mark.parametrize("C", [0.05, 1.0, 20.0])
def test_logistic_regression_equals_scikit_learn(C):
  from sklearn.linear_model import LogisticRegression
  x, y = _classification()
  ref = LogisticRegression(C=C, max_iter=10000, tol=1e-10).fit(x, y)
  ours = models.fit_linear(x, y, "classification", l2=1.0 / (C * len(x)))
  np.testing.assert_allclose(ours.proba(x), ref.predict_proba(x), atol=2e-3)
  w = np.asarray(ours.params["w"])
  # a multinomial model is identified up to a per-feature shift across classes; sklearn centres it
  np.testing.assert_allclose(w - w.mean(1, keepdims=True), ref.coef_.T, atol=2e-3)
  assert (ours.predict(x) == ref.predict(x)).all()


def test_ridge_equals_scikit_learn():
  from sklearn.linear_model import Ridge
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 10)).astype(np.float32)
  s = (x @ rng.normal(size=10) + 0.3 * rng.normal(size=200) + 2.0).astype(np.float32)
  ref = Ridge(alpha=5.0).fit(x, s)
  ours = models.fit_linear(x, s, "regression", l2=2 * 5.0 / len(x))  # sum -> mean: alpha ||w||^2 / N
  np.testing.assert_allclose(np.asarray(ours.params["w"])[:, 0], ref.coef_, atol=1e-3)
  np.testing.assert_allclose(ours.predict(x), ref.predict(x), atol=2e-3)


def test_scalar_mix_puts_its_weight_on_the_informative_layer():
  x_good, y = _classification(n=400, d=8, seed=2)
  rng = np.random.default_rng(3)
  layers = np.stack([rng.normal(size=x_good.shape), x_good, rng.normal(size=x_good.shape)], 1).astype(np.float32)
  alone = (models.fit_linear(x_good, y, "classification", l2=1e-3).predict(x_good) == y).mean()
  for fitted in (models.fit_linear(layers, y, "classification", l2=1e-3, scalar_mix=True),
                 models.fit_mlp(layers, y, "classification", seed=0, steps=400, scalar_mix=True)):
    w = fitted.mix_weights()
    assert len(w) == 3 and abs(sum(w) - 1) < 1e-5
    assert w[1] > 0.5 and w[1] == max(w), w
    assert (fitted.predict(layers) == y).mean() >= alone - 0.03  # as good as knowing the layer


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
  return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", pooling="mean")


def test_featurized_layers_equal_an_independent_encoder_pass_and_are_cached(tiny_checkpoint, tmp_path):
  from mtl_jax.pretrained.encode import TextEncoder
  import tasks.offline  # noqa: F401  registers bbc_topic
  feat = featurize.from_checkpoint("tiny", str(tiny_checkpoint))
  got = featurize.features(feat, "bbc_topic", "validation", 32, cache=tmp_path)
  assert got["x"].shape == (228, 3, 32) and got["y"].dtype.kind == "i" and set(got["y"]) <= set(range(5))
  # the same inputs through mtl-encode's TextEncoder (Embedder + hard trunk): masked mean of its states
  batches = list(featurize._examples("bbc_topic", "validation", 32))
  ids = np.concatenate([b["input_ids"] for b in batches])
  mask = np.concatenate([b["input_mask"] for b in batches])
  hidden = TextEncoder(tiny_checkpoint).hidden(ids, mask)
  want = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  np.testing.assert_allclose(got["x"][:, -1], want, atol=2e-5)
  assert ids[0, 0] == 101  # tokenised with the checkpoint's WordPiece ([CLS] first)
  cached = next(tmp_path.glob("tiny-*/bbc_topic.validation.L32.npz"))
  stamp = cached.stat().st_mtime_ns
  again = featurize.features(feat, "bbc_topic", "validation", 32, cache=tmp_path)
  np.testing.assert_array_equal(again["x"], got["x"])
  assert cached.stat().st_mtime_ns == stamp


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_probe_cli_writes_curves_for_every_size_seed_and_model(tiny_checkpoint, tmp_path):
  out = tmp_path / "out"
  argv = [f"--featurizer=tiny={tiny_checkpoint}", "--tasks=chatterbot_intent", "--sizes=40,all", "--seeds=0,1",
          "--models=logreg,mlp", "--scalar_mix", "--max_length=32", f"--cache_dir={tmp_path / 'cache'}",
          f"--out_dir={out}"]
  assert cli.main(argv) == 0
  rows = list(csv.DictReader(open(out / "probe_results.csv")))
  assert len(rows) == 2 * 2 * 2 * 2  # models x (mix or not) x sizes x seeds
  assert {r["model"] for r in rows} == {"logreg", "logreg+mix", "mlp", "mlp+mix"}
  assert {r["examples"] for r in rows if r["size"] == "all"} == {"598"}
  assert all(0.0 <= float(r["test"]) <= 1.0 for r in rows)
  summary = list(csv.DictReader(open(out / "probe_summary.csv")))
  assert len(summary) == 8 and all(r["n"] == "2" for r in summary)
  assert (out / "plots" / "curves.png").stat().st_size > 5000 and "| chatterbot_intent | tiny |" in (out / "report.md").read_text()
  assert cli.main([*argv[:-1], "--models=svm", f"--out_dir={out}"]) == 2
