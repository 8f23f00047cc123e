"""A checkpoint written on a (4, 2) mesh restores onto (2, 4) (orbax reads straight
into the new shardings) and training continues exactly as an uninterrupted (4, 2) run.
Uses the real Steps.init_state / run_train_step path."""

import jax
import numpy as np

from helpers import fixed_batch
from mtl_jax.scale import partitioning
from mtl_jax.run.checkpoints import Checkpoints
from test_sharding_equivalence import assert_params_close, build

FIRST, THEN = 6, 6


def run(steps, state, n):
  losses = []
  for _ in range(n):
    before = state.params["embedder"]["token"]["embedding"]
    state, metrics = steps.run_train_step(state, fixed_batch())
    assert before.is_deleted()  # the state is donated: updated in place, no second copy
    losses.append(float(metrics["loss"]))
  return state, np.array(losses)


def test_checkpoint_from_4x2_continues_identically_on_2x4(tmp_path):
  a = build("hard", partitioning.make_mesh((4, 2)))
  state, _ = run(a, a.init_state(), FIRST)
  ckpt = Checkpoints(tmp_path, keep=2, period=FIRST)
  assert ckpt.save(FIRST, state, {"batches_consumed": FIRST})
  ckpt.close()
  state, uninterrupted = run(a, state, THEN)  # the reference: never stopped, (4, 2) throughout

  b = build("hard", partitioning.make_mesh((2, 4)))
  ckpt = Checkpoints(tmp_path, keep=2, period=FIRST)
  restored, meta = ckpt.restore(FIRST, b.abstract_state)
  ckpt.close()
  assert meta == {"batches_consumed": FIRST} and int(restored.step) == FIRST
  for leaf, want in zip(jax.tree.leaves(restored), jax.tree.leaves(b.state_shardings)):
    assert leaf.sharding.is_equivalent_to(want, leaf.ndim)  # born in the NEW mesh's shardings
  wi = restored.params["trunk"]["trunk"]["layer_0"]["mlp"]["wi"]["kernel"]
  assert {s.data.shape for s in wi.addressable_shards} == {(32, 64 // 4)}  # was (32, 32) on (4, 2)
  resumed_state, resumed = run(b, restored, THEN)
  np.testing.assert_allclose(resumed, uninterrupted, rtol=2e-4, atol=2e-5)
  assert int(resumed_state.step) == FIRST + THEN
  assert_params_close(resumed_state.params, state.params)
