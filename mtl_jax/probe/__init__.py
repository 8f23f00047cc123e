"""Frozen-featurizer probes: featurize + cache, light target models, scalar mix, learning curves."""
