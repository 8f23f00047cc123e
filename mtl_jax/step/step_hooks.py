"""Things that run beside the training loop every N steps (task affinity, ...), behind one seam.

The trainer stays one loop: after each applied step it calls `Hooks.after_step(step, state, batch)`
and at the end `Hooks.close(step, state)`. A hook is registered by name with a factory
`factory(context) -> hook`; gin picks them:
    step_hooks.names = ['affinity']
A hook's own settings are gin-configurable in its own module. Hooks see the real TrainState
and the batch just trained on, and must not change them (a pure function of what they read),
so a run with a hook trains exactly like a run without.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Sequence

import gin

from mtl_jax.registry import Registry

_REGISTRY = Registry("step hook", "gin (step_hooks.names)")
register, names_available = _REGISTRY.register, _REGISTRY.names


@dataclasses.dataclass(frozen=True)
class Context:
  """What a hook may use: the run's directory, task names, the jitted Steps, lead process flag."""

  model_dir: pathlib.Path
  task_names: Sequence[str]
  steps: Any  # steps.Steps
  lead: bool
  layout: str


class Hooks:
  """The configured hooks, called in order."""

  def __init__(self, hooks: Sequence[Any]):
    self.hooks = list(hooks)

  def after_step(self, step: int, state, batch) -> None:
    for hook in self.hooks:
      hook.after_step(step, state, batch)

  def close(self, step: int, state) -> None:
    for hook in self.hooks:
      hook.close(step, state)


@gin.configurable("step_hooks")
def build(context: Context, names: Sequence[str] = ()) -> Hooks:
  if isinstance(names, str):
    raise ValueError(f"step_hooks.names must be a list of hook names, got the string {names!r}; "
                     f"write step_hooks.names = [{names!r}]")
  return Hooks([_REGISTRY.get(name)(context) for name in names])
