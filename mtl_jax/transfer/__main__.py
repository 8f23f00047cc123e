"""python -m mtl_jax.transfer (mtl-transfer)."""

import sys

from mtl_jax.transfer.cli import main

if __name__ == "__main__":
  sys.exit(main())
