"""mtl_jax/merge methods vs numpy written from each paper's equations, on random tensors (no model)."""

import numpy as np
import pytest

from mtl_jax.merge import base as merge

RNG = np.random.default_rng(0)


def models(n=3, shape=(4, 6)):
  theta0 = RNG.normal(size=shape)
  return {"w": theta0}, [{"w": theta0 + RNG.normal(size=shape)} for _ in range(n)]


def test_simple_average_and_task_arithmetic_equal_their_equations():
  b, fs = models()
  thetas = np.stack([f["w"] for f in fs])
  np.testing.assert_allclose(merge.merge("average", b, fs)["w"], thetas.mean(0), rtol=1e-12)
  want = b["w"] + 0.3 * (thetas - b["w"]).sum(0)  # theta_0 + lambda sum_i tau_i
  np.testing.assert_allclose(merge.merge("task_arithmetic", b, fs, scaling=0.3)["w"], want, rtol=1e-12)


def test_ties_on_a_hand_made_three_model_example():
  base = {"w": np.ones(5)}
  taus = [np.array([3.0, -1.0, 0.5, 2.0, -4.0]),
          np.array([-2.0, -3.0, 1.0, 0.1, 5.0]),
          np.array([1.5, 2.0, -0.2, 1.0, -1.2])]
  # density 0.4 of 5 entries keeps the 2 largest magnitudes of each task vector:
  #   trim: [3, 0, 0, 0, -4], [0, -3, 0, 0, 5], [1.5, 2, 0, 0, 0]
  #   mass: [4.5, -1, 0, 0, 1] -> signs [+, -, 0, 0, +]; the zero-mass entries take the majority sign (+)
  #   disjoint mean of the agreeing non-zero entries: [(3 + 1.5) / 2, -3, 0 (none), 0 (none), 5]
  #   theta_0 + 0.5 * that = 1 + [1.125, -1.5, 0, 0, 2.5]
  got = merge.merge("ties", base, [{"w": 1.0 + t} for t in taus], density=0.4, scaling=0.5)["w"]
  np.testing.assert_allclose(got, [2.125, -0.5, 1.0, 1.0, 3.5], rtol=1e-12)


def test_ties_trims_top_density_per_task_and_dissenters_are_left_out():
  b, fs = models(n=4, shape=(50,))
  taus = np.stack([f["w"] - b["w"] for f in fs])
  trimmed = np.zeros_like(taus)
  for i, t in enumerate(taus):  # the 10 largest |tau| of each task vector (density 0.2 of 50)
    top = np.argsort(-np.abs(t))[:10]
    trimmed[i, top] = t[top]
  sign = np.sign(trimmed.sum(0))
  sign[sign == 0] = 1.0 if np.sign(trimmed.sum(0)).sum() >= 0 else -1.0
  agree = (np.sign(trimmed) == sign) & (trimmed != 0)
  tau = np.array([trimmed[agree[:, j], j].mean() if agree[:, j].any() else 0.0 for j in range(50)])
  np.testing.assert_allclose(merge.merge("ties", b, fs, density=0.2, scaling=0.7)["w"], b["w"] + 0.7 * tau,
                             rtol=1e-12)


def test_dare_rescaling_keeps_the_task_vector_in_expectation():
  b, fs = models(n=2, shape=(8,))
  taus = np.stack([f["w"] - b["w"] for f in fs])
  p, draws = 0.6, 4000
  got = np.stack([merge.merge("dare_linear", b, fs, seed=s, drop_rate=p, scaling=1.0)["w"] for s in range(draws)])
  # E[m / (1-p) tau] = tau; one draw's variance per task is tau^2 p / (1-p)
  se = np.sqrt((taus ** 2).sum(0) * p / (1 - p) / draws)
  assert np.all(np.abs(got.mean(0) - (b["w"] + taus.sum(0))) < 5 * se)
  one = merge.merge("dare_linear", b, fs[:1], seed=3, drop_rate=p, scaling=1.0)["w"] - b["w"]
  kept = one != 0
  np.testing.assert_allclose(one[kept], taus[0][kept] / (1 - p), rtol=1e-12)  # survivors scaled by 1/(1-p)
  big_b, big_f = models(n=1, shape=(20000,))
  drop = merge.merge("dare_linear", big_b, big_f, seed=1, drop_rate=p, scaling=1.0)["w"] == big_b["w"]
  assert abs(drop.mean() - p) < 5 * np.sqrt(p * (1 - p) / drop.size)


def test_dare_ties_without_drops_is_ties_without_trim_and_draws_are_reproducible():
  b, fs = models()
  np.testing.assert_allclose(merge.merge("dare_ties", b, fs, drop_rate=0.0, scaling=0.8)["w"],
                             merge.merge("ties", b, fs, density=1.0, scaling=0.8)["w"], rtol=1e-12)
  one = merge.merge("dare_ties", b, fs, seed=5, drop_rate=0.5)["w"]
  np.testing.assert_array_equal(one, merge.merge("dare_ties", b, fs, seed=5, drop_rate=0.5)["w"])
  assert not np.array_equal(one, merge.merge("dare_ties", b, fs, seed=6, drop_rate=0.5)["w"])


def test_fisher_merging_is_the_fisher_weighted_mean():
  b, fs = models()
  fisher = [{"w": RNG.gamma(1.0, size=(4, 6))} for _ in fs]
  f = np.stack([x["w"] for x in fisher])
  thetas = np.stack([x["w"] for x in fs])
  np.testing.assert_allclose(merge.merge("fisher", b, fs, stats=fisher)["w"], (f * thetas).sum(0) / f.sum(0),
                             rtol=1e-10)
  zero = [{"w": np.zeros((4, 6))} for _ in fs]  # no sensitivity anywhere: the floor makes it the average
  np.testing.assert_allclose(merge.merge("fisher", b, fs, stats=zero)["w"], thetas.mean(0), rtol=1e-10)


@pytest.mark.parametrize("shape,d_in", [((6, 5), 6), ((6, 2, 3), 6), ((2, 3, 5), 6)])
def test_regmean_equals_least_squares_on_the_same_grams(shape, d_in):
  n_models, alpha = 3, 0.7
  xs = [RNG.normal(size=(40 + 10 * i, d_in)) * RNG.uniform(0.5, 2, size=d_in) for i in range(n_models)]
  ws = [RNG.normal(size=shape) for _ in range(n_models)]
  grams = [x.T @ x for x in xs]
  got = merge.merge("regmean", None, [{"k": w} for w in ws], stats=[{"k": g} for g in grams], alpha=alpha)["k"]
  # min_W sum_i alpha ||X_i W - X_i W_i||^2 + (1 - alpha) ||D_i^1/2 (W - W_i)||^2, D_i = diag(X_i^T X_i):
  # the paper's off-diagonal scaling written as one stacked least-squares problem
  rows, targets = [], []
  for x, w, g in zip(xs, ws, grams):
    w2 = w.reshape(d_in, -1)
    d = np.diag(np.sqrt(np.diag(g)))
    rows += [np.sqrt(alpha) * x, np.sqrt(1 - alpha) * d]
    targets += [np.sqrt(alpha) * x @ w2, np.sqrt(1 - alpha) * d @ w2]
  want = np.linalg.lstsq(np.vstack(rows), np.vstack(targets), rcond=None)[0].reshape(shape)
  np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
  unreg = merge.merge("regmean", None, [{"k": w} for w in ws], stats=[{"k": g} for g in grams], alpha=1.0)["k"]
  plain = np.linalg.lstsq(np.vstack(xs), np.vstack([x @ w.reshape(d_in, -1) for x, w in zip(xs, ws)]),
                          rcond=None)[0]
  np.testing.assert_allclose(unreg, plain.reshape(shape), rtol=1e-8, atol=1e-10)


def test_a_leaf_without_statistics_is_averaged():
  b, fs = models()
  thetas = np.stack([f["w"] for f in fs])
  for method in ("regmean", "fisher"):
    np.testing.assert_allclose(merge.merge(method, b, fs, stats=[{} for _ in fs])["w"], thetas.mean(0), rtol=1e-12)


@pytest.mark.parametrize("method,hparams,needs", [
    ("average", {}, None), ("task_arithmetic", {"scaling": 1 / 4}, None), ("ties", {"density": 1.0, "scaling": 1.0}, None),
    ("ties", {"density": 0.3, "scaling": 1.0}, None), ("dare_ties", {"drop_rate": 0.0, "scaling": 1.0}, None),
    ("dare_linear", {"drop_rate": 0.0, "scaling": 1 / 4}, None), ("fisher", {}, "fisher"), ("regmean", {}, "gram")])
def test_merging_copies_of_one_model_returns_that_model(method, hparams, needs):
  b, fs = models(n=1, shape=(6, 4))
  copies = fs * 4
  stats = None
  if needs == "fisher":
    stats = [{"w": RNG.gamma(1.0, size=(6, 4))} for _ in copies]
  elif needs == "gram":
    stats = [{"w": (lambda x: x.T @ x)(RNG.normal(size=(20, 6)))} for _ in copies]
  got = merge.merge(method, b, copies, stats=stats, **hparams)["w"]
  if method == "ties" and hparams["density"] < 1:  # trimming keeps only the top 30% of the (shared) task vector
    tau = fs[0]["w"] - b["w"]
    kept = np.abs(tau) >= np.sort(np.abs(tau).ravel())[-round(0.3 * tau.size)]
    np.testing.assert_allclose(got, b["w"] + np.where(kept, tau, 0), rtol=1e-12)
  else:
    np.testing.assert_allclose(got, fs[0]["w"], rtol=1e-10, atol=1e-12)


def test_bad_hyperparameters_are_one_line_errors():
  b, fs = models()
  with pytest.raises(ValueError, match="no hyperparameter 'lam'.*scaling"):
    merge.merge("task_arithmetic", b, fs, lam=0.5)
  with pytest.raises(ValueError, match="density must be in"):
    merge.merge("ties", b, fs, density=0.0)
  with pytest.raises(ValueError, match="drop_rate must be in"):
    merge.merge("dare_linear", b, fs, drop_rate=1.0)
  with pytest.raises(ValueError, match="unknown merge method 'tie'.*Did you mean 'ties'"):
    merge.get("tie")


@pytest.mark.parametrize("method,hparams,needs", [
    ("average", {}, None), ("task_arithmetic", {"scaling": 0.4}, None), ("ties", {"density": 0.3, "scaling": 0.9}, None),
    ("dare_ties", {"drop_rate": 0.0, "scaling": 0.9}, None), ("fisher", {}, "fisher"), ("regmean", {}, "gram")])
def test_row_blocks_merge_exactly_as_the_whole_tensor(method, hparams, needs):
  b, fs = models(n=3, shape=(37, 5))
  stats = None
  if needs == "fisher":
    stats = [{"w": RNG.gamma(1.0, size=(37, 5))} for _ in fs]
  elif needs == "gram":  # a Gram for a [37, 5] kernel: that leaf is never split; an extra leaf without one is
    stats = [{"w": (lambda x: x.T @ x)(RNG.normal(size=(60, 37)))} for _ in fs]
    b = {**b, "v": RNG.normal(size=(37, 5))}
    fs = [{**f, "v": RNG.normal(size=(37, 5))} for f in fs]
  whole = merge.merge(method, b, fs, stats=stats, chunk=10 ** 9, **hparams)
  blocked = merge.merge(method, b, fs, stats=stats, chunk=20, **hparams)  # 4 rows a block: 10 blocks
  assert len(merge.blocks((37, 5), 20)) == 10
  for path in whole:
    np.testing.assert_allclose(blocked[path], whole[path], rtol=1e-12, err_msg=path)


def test_dare_ties_in_blocks_is_reproducible_and_drops_per_block():
  b, fs = models(n=2, shape=(40, 5))
  one = merge.merge("dare_ties", b, fs, seed=1, chunk=20, drop_rate=0.5)["w"]
  np.testing.assert_array_equal(one, merge.merge("dare_ties", b, fs, seed=1, chunk=20, drop_rate=0.5)["w"])
  kept = one != b["w"]
  assert 0.5 < kept.mean() < 0.95  # two tasks, each entry kept with 1/2: 3/4 survive in expectation
