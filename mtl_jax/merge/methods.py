"""Imports every merge method file so each registers its name (base.get / base.names import this)."""

from mtl_jax.merge import average, dare, fisher, regmean, task_arithmetic, ties  # noqa: F401
