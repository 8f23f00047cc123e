"""mtl_jax: a JAX/Flax multi-task trainer with pluggable parameter sharing."""

__version__ = "0.1.0"

from mtl_jax import _moved  # noqa: E402  old module paths (mtl_jax.param_groups, ...) still import
from mtl_jax import quiet_tf as _quiet_tf  # noqa: E402  TF's CPU-only start-up notes (cuInit ...) silenced

_moved.install()
_quiet_tf.install()
