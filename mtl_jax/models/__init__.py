"""Flax modules: the transformer layer, the multi-task model and its pieces."""

from mtl_jax.models import deberta, modernbert, t5  # noqa: F401  (register their layouts with models/families.py)
