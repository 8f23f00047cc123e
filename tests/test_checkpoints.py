"""orbax save/restore round trip of the sharded TrainState plus the input position."""

import jax
import numpy as np

from helpers import fixed_batch, tiny_steps
from mtl_jax.run.checkpoints import Checkpoints


def test_save_restore_round_trip_and_keep(tmp_path):
  steps = tiny_steps()
  state = steps.init_state()
  ckpt = Checkpoints(tmp_path, keep=2, period=1)
  saved = {}
  for step in range(1, 4):
    state, _ = steps.run_train_step(state, fixed_batch())
    ckpt.save(step, state, {"batches_consumed": step})
    saved[step] = jax.device_get(state)
  ckpt.manager.wait_until_finished()
  assert ckpt.latest_step() == 3 and ckpt.all_steps() == [2, 3]  # keep=2
  restored, meta = ckpt.restore(3, steps.abstract_state)
  assert meta == {"batches_consumed": 3}
  assert int(restored.step) == 3
  for a, b in zip(jax.tree.leaves(saved[3]), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  leaf = jax.tree.leaves(restored.params)[0]
  assert leaf.sharding.mesh.shape == steps.mesh.shape  # restored into the run's shardings
  ckpt.close()
