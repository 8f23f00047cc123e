"""Flax modules: the transformer layer, the multi-task model and its pieces."""
