"""Shared pieces of the adapters / LoRA / AdapterFusion tests: a tiny BERT-architecture config, standalone
strategy init/apply, random (non-zero) per-task params, and a frozen-trunk training check."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtl_jax.step import optim, steps as steps_lib
from mtl_jax.scale import partitioning
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.models.multitask import build_model
from mtl_jax.step.param_groups import Groups
from tests.helpers import KINDS, NUM_CLASSES, TINY, fixed_batch

# post-LN, erf GELU, embedding LayerNorm, token types: the pretrained (exportable) architecture
BERT = EncoderConfig(d_model=16, num_heads=2, mlp_dim=24, num_layers=2, max_len=16, vocab_size=50, norm="post",
                     gelu_exact=True, layer_norm_eps=1e-12, type_vocab_size=2, embed_norm=True)
PRE = EncoderConfig(d_model=16, num_heads=2, mlp_dim=24, num_layers=2, max_len=16, vocab_size=50)
T, B, L = 3, 9, 6
FREEZE = ["^embedder/", "^trunk/(layer_[0-9]+|ln_final)/"]  # what the gin files bind


def inputs(config, seed=0, batch=B):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, L, config.d_model)).astype(np.float32)
  mask = np.ones((batch, L), np.int32)
  mask[2, 3:] = 0
  task_id = (np.arange(batch) * 2 % T).astype(np.int32)  # 0, 2, 1, 0, 2, 1, ...: mixed order, B/T of each
  return jnp.asarray(x), jnp.asarray(mask), jnp.asarray(task_id)


def init(strategy, config, seed=0):
  x, mask, task_id = inputs(config)
  return jax.device_get(nn.meta.unbox(jax.jit(strategy.init)(jax.random.key(seed), x, mask, task_id)["params"]))


def apply(strategy, params, x, mask, task_id, grouped=False):
  fn = jax.jit(lambda p, a, m, t: strategy.apply({"params": p}, a, m, t, True, grouped))
  return np.asarray(fn(params, x, mask, task_id))


def randomize(params, pattern, seed=1, scale=0.3):
  """Every param whose path matches `pattern` (regex) gets random normal values (e.g. LoRA's zero B)."""
  import re
  rng = np.random.default_rng(seed)
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  out = {p: (scale * rng.normal(size=v.shape)).astype(np.float32) if re.search(pattern, p) else np.asarray(v)
         for p, v in flat.items()}
  return flax.traverse_util.unflatten_dict(out, sep="/")


def layer_params(params, k):
  return params[f"layer_{k}"]


def train_frozen(sharing, steps_count=3, freeze=FREEZE):
  """(params before, after `steps_count` steps, optimizer state) of a tiny model trained with the trunk frozen."""
  tx = optim.make_optimizer(100, learning_rate=3e-2, warmup_steps=0, groups=Groups(freeze=freeze))[0]
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = steps_lib.Steps(build_model(TINY, sharing, NUM_CLASSES), tx, KINDS, mesh,
                          partitioning.logical_axis_rules(), 0, 12, 12)
  state = steps.init_state()
  before = flax.traverse_util.flatten_dict(jax.device_get(state.params), sep="/")
  for i in range(steps_count):
    state, metrics = steps.run_train_step(state, fixed_batch(12, 12, seed=i))
  assert bool(metrics["finite"])
  after = flax.traverse_util.flatten_dict(jax.device_get(state.params), sep="/")
  return before, after, state.opt_state


def sized_leaves(opt_state):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(opt_state) if np.ndim(x) > 0)


def check_frozen_training(sharing, trainable_prefixes):
  """The embedder and trunk layers stay bit-identical, every per-task module and head moves, and Adam keeps
  state (mu, nu) for the trainable params only."""
  import re
  before, after, opt_state = train_frozen(sharing)
  frozen = re.compile("|".join(FREEZE))
  moved = []
  for path in before:
    if frozen.search(path):
      np.testing.assert_array_equal(before[path], after[path], err_msg=path)
    elif not np.array_equal(before[path], after[path]):
      moved.append(path)
  for prefix in trainable_prefixes:
    assert any(p.startswith(prefix) for p in moved), (prefix, moved)
  trainable = sum(int(np.prod(v.shape)) for p, v in before.items() if not frozen.search(p))
  assert sized_leaves(opt_state) == 2 * trainable
  return before, after


def gelu_exact(x):
  from scipy.special import erf
  return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def gelu_tanh(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
