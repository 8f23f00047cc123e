"""Sharded training == one device, continued: the model-heavy meshes (2, 4) and (1, 8)
for every sharing strategy (see test_sharding_equivalence.py for the method)."""

import pytest

from mtl_jax import sharing
from test_sharding_equivalence import MESHES, check_sharded_training

pytestmark = pytest.mark.xdist_group("sharding_equivalence")  # one worker under -n with test_sharding_equivalence (shared references)

MODEL_MESHES = MESHES[2:]


@pytest.mark.parametrize("shape", MODEL_MESHES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("sharing_name", sharing.names())
def test_sharded_training_matches_one_device_model_parallel(sharing_name, shape):
  check_sharded_training(sharing_name, shape)
