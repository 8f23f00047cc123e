"""Pluggable shared trunks: import a strategy module to register it (see base.py)."""

from mtl_jax.sharing.base import SharingStrategy, build, names, register  # noqa: F401
from mtl_jax.sharing import hard  # noqa: F401  (registers 'hard')
from mtl_jax.sharing import soft, sluice, cross_stitch, mmoe  # noqa: F401  (register the rest)
from mtl_jax.sharing import adapters, lora, adapter_fusion  # noqa: F401  (parameter-efficient, on a frozen trunk)
