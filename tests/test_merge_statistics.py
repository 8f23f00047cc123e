"""RegMean's Gram matrices and Fisher merging's diagonal Fisher on the tiny model, vs independent references:
the Grams from flax's captured intermediates (each linear layer's input, written out in numpy), the Fisher
from a Python loop over jitted per-example gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from helpers import KINDS, NUM_CLASSES, TINY, fixed_batch
from mtl_jax.merge import fisher, gram
from mtl_jax.models.multitask import build_model
from mtl_jax.step import losses


def tiny():
  model = build_model(TINY, "hard", NUM_CLASSES)
  batch = fixed_batch(batch_size=6, length=10)
  batch["weight"][-1] = 0.0  # a padding row counts for nothing
  params = nn.meta.unbox(model.init(jax.random.key(0), batch)["params"])
  return model, params, batch


def _np_gram(x, w):
  x = np.asarray(x, np.float64).reshape(w.size, -1)
  return (x * np.ravel(w)[:, None]).T @ x


def test_grams_are_each_linear_layers_inputs_over_real_tokens():
  model, params, batch = tiny()
  _, inter = model.apply({"params": params}, batch, deterministic=True, capture_intermediates=True,
                         mutable=["intermediates"])
  inter = traverse_util.flatten_dict(inter["intermediates"], sep="/")
  tokens = batch["input_mask"] * batch["weight"][:, None]
  got = gram.statistics(model, params, [batch, batch])  # two batches: the mean is unchanged
  n = tokens.sum()
  for k in range(TINY.num_layers):
    layer = f"trunk/trunk/layer_{k}"
    ln_att = inter[f"{layer}/ln_attention/__call__"][0]  # pre-LN: attention reads LN(x), the MLP LN(x')
    ln_mlp = inter[f"{layer}/ln_mlp/__call__"][0]
    hidden = jax.nn.gelu(inter[f"{layer}/mlp/wi/__call__"][0], approximate=True)
    for name in ("query", "key", "value"):
      np.testing.assert_allclose(got[f"{layer}/attention/{name}_kernel"], _np_gram(ln_att, tokens) / n, rtol=2e-5,
                                 atol=1e-6)
    np.testing.assert_allclose(got[f"{layer}/mlp/wi/kernel"], _np_gram(ln_mlp, tokens) / n, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(got[f"{layer}/mlp/wo/kernel"], _np_gram(hidden, tokens) / n, rtol=2e-5, atol=1e-6)
    # the recomputed heads' context is what the module multiplies by out_kernel
    flat = traverse_util.flatten_dict(params, sep="/")
    att = traverse_util.unflatten_dict({tuple(p.split("/")[4:]): v for p, v in flat.items()
                                        if p.startswith(f"{layer}/attention/")})
    from mtl_jax.models.encoder import SelfAttention
    module = SelfAttention(TINY).bind({"params": att})
    context = gram.attention_context(module, ln_att, batch["input_mask"])
    out = np.einsum("blhk,hkd->bld", context, att["out_kernel"]) + att["out_bias"]
    np.testing.assert_allclose(out, inter[f"{layer}/attention/__call__"][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[f"{layer}/attention/out_kernel"], _np_gram(context, tokens) / n, rtol=2e-5,
                               atol=1e-6)
  assert not any(p.startswith("heads/") for p in got)


def test_fisher_statistics_are_the_mean_squared_per_example_gradient():
  model, params, batch = tiny()
  got = fisher.statistics(model, list(KINDS), 0, params, [batch])
  flat = traverse_util.flatten_dict(params, sep="/")
  assert not any(p.startswith("heads/") for p in got) and any(p.startswith("embedder/") for p in got)
  assert set(got) == {p for p in flat if not p.startswith("heads/")}

  @jax.jit
  def grad_one(p, example):
    b = jax.tree.map(lambda x: x[None], example)
    return jax.grad(lambda q: losses.example_losses(model.apply({"params": q}, b, deterministic=True), b,
                                                    list(KINDS))[0])(p)

  real = np.flatnonzero(batch["weight"] > 0)
  grads = [traverse_util.flatten_dict(grad_one(params, {k: jnp.asarray(v[i]) for k, v in batch.items()}), sep="/")
           for i in real]
  for path in ("trunk/trunk/layer_1/mlp/wo/kernel", "embedder/position", "trunk/ln_final/LayerNorm_0/scale"):
    want = np.mean([np.asarray(g[path], np.float64) ** 2 for g in grads], axis=0)
    np.testing.assert_allclose(got[path], want, rtol=1e-4, atol=1e-12)
