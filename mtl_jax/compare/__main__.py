"""`python -m mtl_jax.compare` == `mtl-compare` (see cli.py)."""

import sys

from mtl_jax.compare.cli import main

if __name__ == "__main__":
  sys.exit(main())
