import sys

from mtl_jax.predict.cli import main

sys.exit(main())
