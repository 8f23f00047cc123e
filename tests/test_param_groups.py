"""Parameter groups (mtl_jax/step/param_groups.py + optim.make_optimizer): multipliers by path
against hand-written numbers, frozen parameters untouched and stateless, each group's
update against a separately built optax.adamw, the plain optimizer unchanged, checkpoints."""

import dataclasses
import pathlib
import subprocess
import sys

import flax
import jax
import numpy as np
import optax
import pytest

from conftest import REPO, subprocess_env
from helpers import KINDS, NUM_CLASSES, TINY, fixed_batch
from mtl_jax.step import optim, steps as steps_lib
from mtl_jax.scale import partitioning
from mtl_jax.run.checkpoints import Checkpoints
from mtl_jax.models.multitask import build_model
from mtl_jax.step.param_groups import Groups

pytestmark = pytest.mark.xdist_group("param_groups")  # one worker under -n: the (4, 2)-mesh sluice steps compile once

LR, B1, B2, WD = 3e-3, 0.9, 0.98, 0.01
SLUICE_GROUPS = Groups(freeze=["^embedder/"], layer_decay=0.8, mixing_multiplier=10.0, head_multiplier=2.0)
HEADS_ONLY = Groups(freeze=["^(?!heads/)"])  # gin/optim/frozen_trunk.gin
EMBEDDER_SIZE = 64 * 32 + 50 * 32  # position + token tables of TINY
HEADS_SIZE = 3 * 32 * 3 + 3 * 3    # [T, D, C] kernel + [T, C] bias


def make_steps(sharing, tx, mesh=None, config=TINY):
  mesh = mesh or partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  return steps_lib.Steps(build_model(config, sharing, NUM_CLASSES), tx, KINDS, mesh,
                         partitioning.logical_axis_rules(), 0, 16, 12)


def grouped_tx(groups, **kw):
  return optim.make_optimizer(100, learning_rate=LR, warmup_steps=0, b1=B1, b2=B2, weight_decay=WD,
                              groups=groups, **kw)[0]


def abstract_params(sharing, config=TINY):
  model = build_model(config, sharing, NUM_CLASSES)
  return jax.eval_shape(model.init, jax.random.key(0), steps_lib.dummy_batch(2, 8))["params"]


def flat(tree):
  return flax.traverse_util.flatten_dict(tree, sep="/")


def sized_leaves(opt_state):
  """Elements in the optimizer state's non-scalar leaves (Adam mu / nu; counts are scalars)."""
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(opt_state) if np.ndim(x) > 0)


@pytest.fixture(scope="module")
def sluice():
  """Sluice on a (4, 2) mesh: frozen embeddings, layer decay, mixing x10, heads x2."""
  steps = make_steps("sluice", grouped_tx(SLUICE_GROUPS), mesh=partitioning.make_mesh((4, 2)))
  return steps, jax.device_get(steps.init_state())  # train steps donate their state: start from init_state()


@pytest.fixture(scope="module")
def heads_only():
  return make_steps("hard", grouped_tx(HEADS_ONLY))


# ---- multipliers by path ---------------------------------------------------------------

# 3 layers, decay 0.5: layer k gets 0.5 ** (2 - k), the embedder 0.5 ** 3, the rest 1.
BY_HAND_LAYER = {"layer_0": 0.25, "layer_1": 0.5, "layer_2": 1.0}
BY_HAND_MIXING = {
    "hard": set(), "soft": set(),
    "sluice": {"trunk/sluice/alpha_0", "trunk/sluice/alpha_1", "trunk/sluice/alpha_2", "trunk/sluice/beta"},
    "cross_stitch": {"trunk/cross_stitch/alpha_0", "trunk/cross_stitch/alpha_1", "trunk/cross_stitch/alpha_2"},
    "mmoe": {"trunk/mmoe/gate_kernel", "trunk/mmoe/gate_bias"},
}


@pytest.mark.parametrize("sharing", sorted(BY_HAND_MIXING))
def test_multipliers_by_hand(sharing):
  params = abstract_params(sharing, dataclasses.replace(TINY, num_layers=3))
  got = Groups(layer_decay=0.5, mixing_multiplier=10.0, head_multiplier=3.0).multipliers(params)
  assert set(got) == set(flat(params))
  for path, m in got.items():
    segments = path.split("/")
    layer = [s for s in segments if s in BY_HAND_LAYER]
    if segments[0] == "embedder":
      want = 0.125
    elif segments[0] == "heads":
      want = 3.0
    elif path in BY_HAND_MIXING[sharing]:
      want = 10.0
    elif layer:
      want = BY_HAND_LAYER[layer[0]]
    else:  # final LayerNorm
      assert "ln_final" in segments, path
      want = 1.0
    assert m == want, (path, m, want)
  assert {p for p, m in got.items() if m == 10.0} == BY_HAND_MIXING[sharing]


def test_freeze_beats_rules_and_first_rule_wins():
  params = abstract_params("hard")
  got = Groups(freeze=["/ln_"], rules=[("layer_1/mlp/", 7.0), ("/mlp/", 0.0), ("query", 2.5)],
               layer_decay=0.5).multipliers(params)
  assert got["trunk/ln_final/LayerNorm_0/scale"] == 0.0
  assert got["trunk/trunk/layer_1/ln_mlp/LayerNorm_0/bias"] == 0.0   # freeze first
  assert got["trunk/trunk/layer_1/mlp/wi/kernel"] == 7.0
  assert got["trunk/trunk/layer_0/mlp/wo/bias"] == 0.0               # second rule
  assert got["trunk/trunk/layer_0/attention/query_kernel"] == 2.5    # a rule replaces the decay
  assert got["trunk/trunk/layer_0/attention/key_kernel"] == 0.5
  assert got["embedder/position"] == 0.25 and got["heads/kernel"] == 1.0


def test_summary_counts(heads_only):
  steps = heads_only
  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(steps.abstract_state.params))
  assert HEADS_ONLY.summary(steps.abstract_state.params) == \
      f"param groups: frozen={total - HEADS_SIZE:,} lr_x1={HEADS_SIZE:,}"


# ---- training ----------------------------------------------------------------------------

def test_frozen_trunk_trains_only_heads_and_keeps_no_state(heads_only):
  steps = heads_only
  state = steps.init_state()
  before = flat(jax.device_get(state.params))
  for _ in range(3):
    state, metrics = steps.run_train_step(state, fixed_batch())
  assert bool(metrics["finite"])
  after = flat(jax.device_get(state.params))
  for path in before:
    if path.startswith("heads/"):
      assert not np.array_equal(before[path], after[path]), path
    else:
      np.testing.assert_array_equal(before[path], after[path], err_msg=path)
  assert sized_leaves(state.opt_state) == 2 * HEADS_SIZE  # mu + nu of the heads only


def test_sluice_groups_freeze_embeddings_and_state_size(sluice):
  steps, host_init = sluice
  state, _ = steps.run_train_step(steps.init_state(), fixed_batch())
  state, _ = steps.run_train_step(state, fixed_batch())
  before, after = flat(host_init.params), flat(jax.device_get(state.params))
  for path in before:
    same = np.array_equal(before[path], after[path])
    assert same == path.startswith("embedder/"), path
  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(host_init.params))
  assert sized_leaves(state.opt_state) == 2 * (total - EMBEDDER_SIZE)
  # the Adam moments are placed like their parameters (logical shardings through MaskedNode)
  mu = flat(steps.abstract_state.opt_state[1].inner_states["x1"].inner_state[0].mu)
  params = flat(steps.abstract_state.params)
  path = "trunk/sluice/layer_1/mlp/wi/kernel"
  assert mu[path].sharding == params[path].sharding and params[path].sharding.spec != jax.sharding.PartitionSpec()


def test_each_group_update_equals_its_own_adamw(sluice):
  """One update on random gradients vs optax.adamw(LR * m) run on each group's params alone,
  with the gradients clipped by the norm of the trainable ones, computed by hand."""
  steps, host_init = sluice
  params = flat(host_init.params)
  rng = np.random.default_rng(1)
  grads = {p: rng.normal(size=v.shape).astype(np.float32) for p, v in params.items()}
  mult = SLUICE_GROUPS.multipliers(host_init.params)
  norm = np.sqrt(sum(np.sum(np.square(grads[p], dtype=np.float64)) for p in params if mult[p] > 0))
  scale = min(1.0, 1.0 / norm)
  assert scale < 0.1  # clipping is live
  unflat = lambda d: flax.traverse_util.unflatten_dict(d, sep="/")
  tx = steps.tx
  updates, _ = jax.jit(tx.update)(unflat(grads), tx.init(unflat(params)), unflat(params))
  updates = flat(updates)
  assert set(mult.values()) == {0.0, 0.8, 1.0, 2.0, 10.0}
  for m in set(mult.values()):
    group = [p for p in params if mult[p] == m]
    if m == 0:
      for p in group:
        np.testing.assert_array_equal(updates[p], 0.0, err_msg=p)
      continue
    ref = optax.adamw(LR * m, b1=B1, b2=B2, weight_decay=WD, mask={p: params[p].ndim > 1 for p in group})
    g = {p: grads[p] * np.float32(scale) for p in group}
    p_ = {p: params[p] for p in group}
    want, _ = ref.update(g, ref.init(p_), p_)
    for p in group:
      np.testing.assert_allclose(updates[p], want[p], rtol=2e-5, atol=1e-9, err_msg=p)


@pytest.mark.parametrize("clip_norm", [1.0, 1e-9])
def test_frozen_gradients_do_not_count_in_clipping(clip_norm):
  """Trainable gradients ~1e-8 are near Adam's eps, so any wrong clip factor shows."""
  params = {"embedder": {"e": np.ones((4, 3), np.float32)},
            "heads": {"kernel": np.full((2, 3), 0.5, np.float32), "bias": np.zeros(3, np.float32)}}
  rng = np.random.default_rng(0)
  head_grads = {"kernel": (1e-8 * rng.normal(size=(2, 3))).astype(np.float32),
                "bias": (1e-8 * rng.normal(size=3)).astype(np.float32)}
  grads = {"embedder": {"e": np.full((4, 3), 1e3, np.float32)}, "heads": head_grads}
  tx = grouped_tx(Groups(freeze=["^embedder/"]), clip_norm=clip_norm)
  updates, _ = tx.update(grads, tx.init(params), params)
  norm = np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in head_grads.values()))
  scale = np.float32(min(1.0, clip_norm / norm))
  ref = optax.adamw(LR, b1=B1, b2=B2, weight_decay=WD, mask={"kernel": True, "bias": False})
  want, _ = ref.update({k: g * scale for k, g in head_grads.items()}, ref.init(params["heads"]), params["heads"])
  for k in want:
    np.testing.assert_allclose(updates["heads"][k], want[k], rtol=1e-5, err_msg=k)
  np.testing.assert_array_equal(updates["embedder"]["e"], 0.0)


def test_no_groups_is_bit_identical_to_the_plain_optimizer(clean_gin):
  """make_optimizer without groups vs today's chain written out here: same params after 3 steps."""
  total, warmup = 20, 5
  new_tx, _ = optim.make_optimizer(total, learning_rate=LR, warmup_steps=warmup)
  schedule = optax.warmup_cosine_decay_schedule(0.0, LR, warmup_steps=warmup, decay_steps=total,
                                                end_value=LR * 0.1)
  old_tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(
      schedule, b1=0.9, b2=0.98, weight_decay=0.01, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)))
  finals = []
  for tx in (new_tx, old_tx):
    steps = make_steps("hard", tx)
    state = steps.init_state()
    for _ in range(3):
      state, _ = steps.run_train_step(state, fixed_batch())
    finals.append(jax.device_get(state))
  assert jax.tree.structure(finals[0]) == jax.tree.structure(finals[1])
  for a, b in zip(jax.tree.leaves(finals[0]), jax.tree.leaves(finals[1])):
    np.testing.assert_array_equal(a, b)


def test_grouped_state_checkpoint_round_trip(sluice, tmp_path):
  steps, _ = sluice
  state, _ = steps.run_train_step(steps.init_state(), fixed_batch())
  saved = jax.device_get(state)
  ckpt = Checkpoints(tmp_path, keep=1, period=1)
  ckpt.save(1, state, {"batches_consumed": 1})
  ckpt.manager.wait_until_finished()
  restored, _ = ckpt.restore(1, steps.abstract_state)
  ckpt.close()
  assert jax.tree.structure(restored) == jax.tree.structure(saved)
  for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  state, _ = steps.run_train_step(restored, fixed_batch())  # and training continues from it
  assert int(state.step) == 2


# ---- gin presets and errors --------------------------------------------------------------

PRESETS = {
    "freeze_embeddings": Groups(freeze=["^embedder/"]),
    "frozen_trunk": HEADS_ONLY,
    "layer_decay": Groups(layer_decay=0.8),
    "mixing_lr": Groups(mixing_multiplier=10.0),
}


def test_gin_presets_parse_alone_and_bind_groups():
  """In a fresh process, so each file must import the module defining its configurable."""
  code = ("import sys, gin\n"
          "for f in sys.argv[1:]:\n"
          "  gin.clear_config(); gin.parse_config_file(f)\n"
          "  from mtl_jax import param_groups; print(repr(param_groups.configured()))\n")
  files = [str(REPO / "gin" / "optim" / f"{name}.gin") for name in PRESETS]
  proc = subprocess.run([sys.executable, "-c", code, *files], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.splitlines() == [repr(g) for g in PRESETS.values()]
  assert not (REPO / "gin" / "optim" / "__init__.py").exists()
  assert sorted(p.stem for p in pathlib.Path(REPO / "gin" / "optim").glob("*.gin")) == sorted(PRESETS)


def test_frozen_trunk_preset_keeps_only_heads():
  mult = HEADS_ONLY.multipliers(abstract_params("mmoe"))
  assert {p for p, m in mult.items() if m} == {"heads/kernel", "heads/bias"}


BAD = [
    (dict(freeze=["(unclosed"]), "'(unclosed'"),
    (dict(freeze="^embedder/"), "'^embedder/'"),
    (dict(freeze=[3]), "3"),
    (dict(rules=[("heads", -1.0)]), "-1.0"),
    (dict(rules=[("heads",)]), "('heads',)"),
    (dict(rules=[("[", 2.0)]), "'['"),
    (dict(layer_decay=0.0), "0.0"),
    (dict(layer_decay=1.5), "1.5"),
    (dict(mixing_multiplier=-2.0), "-2.0"),
    (dict(head_multiplier=float("nan")), "nan"),
]


@pytest.mark.parametrize("kwargs,named", BAD, ids=[str(k) for k, _ in BAD])
def test_bad_groups_name_the_value(kwargs, named):
  with pytest.raises(ValueError) as e:
    Groups(**kwargs)
  assert named in str(e.value) and "\n" not in str(e.value)


BAD_FOR_MODEL = [
    (dict(freeze=["^encoder/"]), "'^encoder/'"),
    (dict(rules=[("gate_kernel", 2.0)]), "'gate_kernel'"),   # hard sharing has no gate
    (dict(freeze=["."]), "nothing would train"),
    (dict(freeze=["^embedder/"], rules=[(".", 0.0)]), "nothing would train"),
]


@pytest.mark.parametrize("kwargs,named", BAD_FOR_MODEL, ids=[str(k) for k, _ in BAD_FOR_MODEL])
def test_groups_that_do_not_fit_the_model_name_the_value(kwargs, named):
  with pytest.raises(ValueError) as e:
    Groups(**kwargs).multipliers(abstract_params("hard"))
  message = str(e.value)
  assert named in message and "\n" not in message
  if "matches no parameter" in message:
    assert "'embedder/position'" in message  # an example path to fix the pattern by


def test_bad_pattern_fails_when_the_state_is_built():
  with pytest.raises(ValueError, match=r"'\^encoder/' matches no parameter"):
    make_steps("hard", grouped_tx(Groups(freeze=["^encoder/"])))
