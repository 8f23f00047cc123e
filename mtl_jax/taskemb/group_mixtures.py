"""Registers the task-group mixtures of an mtl-taskemb proposal (gin: `import mtl_jax.taskemb.group_mixtures`).

Why an env variable: a proposal's groups are ad-hoc task sets, not mixtures any task module
defines; the experiment file mtl-taskemb writes sets MTL_JAX_TASKEMB_GROUPS='name=t1,t2;...' for
every cell, and importing this module (after the tasks' own modules) registers each as a mixture
with rates proportional to size capped at 3000 examples (as offline_all).
"""

from __future__ import annotations

import os

from mtl_jax.input import mixing
from mtl_jax.taskemb.groups import ENV
from tasks import registration


def parse(text: str) -> dict[str, list[str]]:
  out = {}
  for part in filter(None, (p.strip() for p in text.split(";"))):
    if "=" not in part:
      raise ValueError(f"{ENV}: {part!r} is not NAME=TASK,TASK; e.g. taskemb_group.a.b=a,b")
    name, tasks = part.split("=", 1)
    out[name.strip()] = [t.strip() for t in tasks.split(",") if t.strip()]
  return out


def register_from_env() -> list[str]:
  groups = parse(os.environ.get(ENV, ""))
  for name, tasks in groups.items():
    registration.add_mixture(name, [(t, mixing.proportional(maximum=3000)) for t in sorted(tasks)])
  return list(groups)


REGISTERED = register_from_env()
