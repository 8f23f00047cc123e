"""seqio Task and Mixture definitions for mtl_jax (import a module to register its tasks)."""
