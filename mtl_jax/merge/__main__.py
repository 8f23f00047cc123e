import sys

from mtl_jax.merge.cli import main

sys.exit(main())
