"""Every sharing strategy and the weighting methods under the 'seeds' axis (step/seed_axis.py): two steps of
seeds [0, 3] as one vmapped step give each seed's own Steps' losses, parameters and weighting state; also on
a ('data', 'model') mesh and with microbatches.

Marked `matrix`: one vmapped compile per strategy / method (24 compiles) is minutes on 2 cores."""

import pytest

from mtl_jax import sharing, weighting
from test_seeds_in_step import check_seed_axis


def _keeps_state(name) -> bool:
  method = weighting.build(name, 3)
  return bool(method.init(3)) or isinstance(method, weighting.base.GradMethod)


# Methods whose state rides the seeds axis, rlw (a per-seed rng draw) and the iterative solvers (a while loop
# per seed: mgda, nash_mtl). The other stateless methods take the same param_step / loss path; all 25 passed
# once here (4 Dec 2026, 197 CPU-s for the whole file), left out to keep CI's matrix step inside its budget.
WEIGHTING = sorted(n for n in weighting.names()
                   if n != "static" and (n in ("rlw", "mgda", "nash_mtl") or _keeps_state(n)))


@pytest.mark.matrix
@pytest.mark.parametrize("strategy", sorted(sharing.names()))
def test_every_strategy_under_the_seeds_axis(strategy):
  check_seed_axis([0, 3], sharing=strategy, method="equal")


@pytest.mark.matrix
@pytest.mark.parametrize("method", WEIGHTING)
def test_every_weighting_method_under_the_seeds_axis(method):
  # task-grouped batches: what gradient methods need (and loss methods accept)
  check_seed_axis([0, 3], method=method, grouped=True)


@pytest.mark.matrix
@pytest.mark.parametrize("mesh_shape, microbatches", [((4, 2), 1), ((1, 1), 2)])
def test_seeds_axis_on_a_data_model_mesh_and_with_microbatches(mesh_shape, microbatches):
  # the 'seeds' axis is unsharded: each seed's params / batch keep their own ('data', 'model') placement
  check_seed_axis([0, 3], method="dwa", mesh_shape=mesh_shape, microbatches=microbatches)
