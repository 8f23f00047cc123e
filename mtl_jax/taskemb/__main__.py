"""python -m mtl_jax.taskemb (see mtl_jax/taskemb/cli.py)."""
import sys

from mtl_jax.taskemb import cli

if __name__ == "__main__":
  sys.exit(cli.main(sys.argv[1:]))
