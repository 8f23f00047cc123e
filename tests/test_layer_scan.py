"""EncoderConfig.scan_layers: one nn.scan over a 'layers'-stacked layer. With the unrolled
model's layer_{k} params stacked into it, the loss and gradients are the unrolled ones
(hard, soft towers, remat inside the scan); strategies and loaders that need per-layer
params refuse it in one line."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from helpers import TINY, fixed_batch, tiny_steps
from mtl_jax.pretrained import load

CFG = dataclasses.replace(TINY, num_layers=4)  # 4: no other dimension (3 tasks, 2 heads) has that size
_LAYER = re.compile(r"layer_(\d+)/")


def stacked_like(unrolled, scanned_abstract):
  """The unrolled params rearranged into the scanned tree: layer_{k}/x -> layer_scan/layer/x, stacked on
  the axis where the scanned leaf has K entries (0 for the hard trunk, 1 under soft's 'tasks' axis)."""
  flat = traverse_util.flatten_dict(unrolled, sep="/")
  out = {}
  for path, target in traverse_util.flatten_dict(scanned_abstract, sep="/").items():
    if "layer_scan/layer/" not in path:
      out[path] = flat[path]
      continue
    parts = [flat[path.replace("layer_scan/layer/", f"layer_{k}/")] for k in range(CFG.num_layers)]
    axis = next(i for i in range(target.ndim) if target.shape[i] == CFG.num_layers and
                target.shape[:i] + target.shape[i + 1:] == parts[0].shape)
    out[path] = jnp.stack(parts, axis=axis)
  return traverse_util.unflatten_dict(out, sep="/")


def loss_and_grads(steps, params, batch):
  with jax.set_mesh(steps.mesh):
    loss, _, grads, _ = jax.jit(steps._loss_and_grads)(params, jax.tree.map(jnp.asarray, batch), jax.random.key(3),
                                                       {}, jnp.zeros((), jnp.int32))
  return jax.device_get((loss, grads))


@pytest.mark.parametrize("sharing,remat", [("hard", "full"), ("soft", "none")])
def test_scanned_layers_equal_the_unrolled_stack(sharing, remat):
  batch = fixed_batch()
  unrolled = tiny_steps(sharing, config=CFG)
  params = unrolled.init_state().params
  scanned = tiny_steps(sharing, config=dataclasses.replace(CFG, scan_layers=True, remat_policy=remat))
  paths = traverse_util.flatten_dict(scanned.abstract_state.params, sep="/")
  assert not any(_LAYER.search(p) for p in paths) and any("layer_scan/layer/attention/query_kernel" in p
                                                          for p in paths)
  query = next(v for p, v in paths.items() if p.endswith("layer_scan/layer/attention/query_kernel"))
  assert CFG.num_layers in query.shape  # one stacked array for all layers
  loss0, grads0 = loss_and_grads(unrolled, params, batch)
  loss, grads = loss_and_grads(scanned, stacked_like(params, scanned.abstract_state.params), batch)
  np.testing.assert_allclose(loss, loss0, rtol=1e-6)
  want = stacked_like(grads0, scanned.abstract_state.params)
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads0))
  for g, g0 in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, g0, rtol=1e-5, atol=1e-6 * scale)


def test_scan_is_refused_where_layers_must_stay_separate():
  with pytest.raises(ValueError, match="scan_layers=True is not supported by sluice / cross_stitch"):
    tiny_steps("sluice", config=dataclasses.replace(CFG, scan_layers=True))
  scanned = tiny_steps("hard", config=dataclasses.replace(CFG, scan_layers=True))
  params = scanned.init_state().params
  kernel = params["trunk"]["trunk"]["layer_scan"]["layer"]["mlp"]["wi"]["kernel"]
  assert kernel.shape == (CFG.num_layers, CFG.d_model, CFG.mlp_dim)
  with pytest.raises(ValueError, match="pretrained / init_from checkpoints .* set EncoderConfig.scan_layers=False"):
    load.into_params(params, {"layer_0/attention/query_kernel": np.zeros((32, 2, 16), np.float32)})
