"""mtl_jax: a JAX/Flax multi-task trainer with pluggable parameter sharing."""

__version__ = "0.1.0"
