"""python -m mtl_jax.probe (mtl-probe)."""

import sys

from mtl_jax.probe.cli import main

if __name__ == "__main__":
  sys.exit(main())
