"""Model merging as a sharing strategy: single-task runs from one starting point -> one multi-task MODEL_DIR.

Methods (one file each, behind base.Method): average, task_arithmetic, ties, dare (dare_linear, dare_ties),
fisher, regmean. `base.merge(method, base, finetuned, stats, **hparams)` merges flat {path: array} dicts
leaf by leaf; `python -m mtl_jax.merge` (mtl-merge, cli.py) builds the merged MODEL_DIR.
"""

from mtl_jax.merge import methods as _methods  # noqa: E402,F401  each method file registers its name in base
