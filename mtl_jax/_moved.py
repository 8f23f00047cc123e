"""Old import paths of the modules regrouped into run/, step/, scale/ and input/ keep working.

Why: users' gin files say `import mtl_jax.param_groups`, scripts run
`python -m mtl_jax.data_stats`, old MODEL_DIRs' config.gin files hold such lines too. A meta-path
finder maps each old name to the SAME module object as its new home (gin registers every
configurable once), and `python -m <old name>` runs the new module's code.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

NEW_HOME = {
    **{m: "run" for m in ("trainer", "checkpoints", "lock", "run_spec", "data_fingerprint",
                          "starting_point", "write_errors", "device_oom", "crash_site", "faults")},
    **{m: "step" for m in ("steps", "losses", "optim", "param_groups", "metrics", "evaluation",
                           "step_hooks")},
    **{m: "scale" for m in ("partitioning", "distributed", "precision", "remat", "microbatch")},
    **{m: "input" for m in ("input_pipeline", "features", "mixing", "mixing_schedule",
                            "mixing_monitor", "vocab", "task_info", "multilabel", "data_stats")},
}
OLD_TO_NEW = {f"mtl_jax.{m}": f"mtl_jax.{pkg}.{m}" for m, pkg in NEW_HOME.items()}


class _AliasLoader(importlib.abc.Loader):
  def __init__(self, target: str):
    self.target = target

  def create_module(self, spec):
    return importlib.import_module(self.target)

  def exec_module(self, module):
    pass  # the target module is already executed

  def get_code(self, fullname):  # `python -m mtl_jax.<old name>`: runpy runs the new module's code
    del fullname
    spec = importlib.util.find_spec(self.target)
    return spec.loader.get_code(self.target)


class _AliasFinder(importlib.abc.MetaPathFinder):
  def find_spec(self, fullname, path=None, target=None):
    del path, target
    new = OLD_TO_NEW.get(fullname)
    if new is None:
      return None
    return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
  if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.append(_AliasFinder())
