"""Packing on the T5, DeBERTa-v2 and ModernBERT layouts: each packed example's logits and losses equal
the ones it has alone (tests/test_packing.py's check, 1e-5), tiny random-weight trunks of each family
(tests/trunk_families.py's toy configs), hard sharing. ModernBERT (rotary positions + a sliding window
of 3 on layer 1, narrower than the packed rows) runs in the default suite; T5 / DeBERTa under matrix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtl_jax.models import segments

from test_packing import _model_and_params, assert_packed_equals_unpacked, examples, pack
from trunk_families import TOY_CONFIGS

LAYOUTS = {  # token types where the layout has them (DeBERTa), so per-token types in a packed row count
    "modernbert": TOY_CONFIGS["modernbert"],
    "t5": TOY_CONFIGS["t5"],
    "deberta-v2": dataclasses.replace(TOY_CONFIGS["deberta-v2"], type_vocab_size=2),
}


@pytest.mark.parametrize("model_type", [m if m == "modernbert" else pytest.param(m, marks=pytest.mark.matrix)
                                        for m in LAYOUTS])
def test_packed_logits_and_losses_equal_unpacked_on_each_layout(model_type):
  model, params = _model_and_params("hard", LAYOUTS[model_type])
  assert_packed_equals_unpacked(model, params, examples())


def test_segment_positions_are_the_packers_positions():
  """segments.segment_positions (from the segment ids alone, inside the model) == the positions the
  packer writes (tf, mtl_jax/input/packing.py) on every real token; an unpacked row: 0..n-1."""
  packed = pack(examples())
  got = np.asarray(segments.segment_positions(packed["segment_ids"]))
  real = packed["segment_ids"] > 0
  assert (packed["positions"][real] > 0).any() and (packed["segment_ids"].max(1) > 1).any()
  np.testing.assert_array_equal(got[real], packed["positions"][real])
  mask = (np.arange(8)[None] < np.array([[5], [8]])).astype(np.int32)
  np.testing.assert_array_equal(np.asarray(segments.segment_positions(mask))[mask > 0],
                                np.concatenate([np.arange(5), np.arange(8)]))
