"""Loss weighting and gradient combination (see base.py for the interface).

gin: `weighting.method = '<name>'` (include gin/weighting/<name>.gin), `weighting.rep_grad`
for gradient methods; each method's options are `weighting.<name>.<option>`. The old
`losses.combine_task_losses.weighting = 'uniform' | 'examples'` still selects equal / examples.
"""

from __future__ import annotations

import gin
import jax

from mtl_jax.weighting import base
from mtl_jax.weighting.base import Context, Method, build, names, register  # noqa: F401
from mtl_jax.weighting import equal, examples, static, uw, dwa, rlw, gls, famo, stch  # noqa: F401  (loss)
from mtl_jax.weighting import gradnorm, mgda, pcgrad, gradvac, cagrad, imtl, nash_mtl, aligned_mtl, upgrad  # noqa: F401
from mtl_jax.weighting import dualproj, config, fairgrad, sdmgrad, db_mtl, moco, excess_mtl  # noqa: F401
from mtl_jax.weighting import auto_lambda  # noqa: F401  (bilevel)

DEFAULT = "equal"
TASK_GRADS = ("auto", "keep", "recompute")


@gin.configurable("weighting", module="mtl_jax")
def configured(num_tasks: int, method: str | None = None, rep_grad: bool = False, task_grads: str = "auto") -> Method:
  """The gin-chosen method for `num_tasks` tasks (validated: one clear error).

  task_grads (gradient methods): 'keep' all T per-task gradients of the shared parameters, 'recompute' the
  Gram matrix from chunks of tasks and the update as one more backward pass (weighting/chunked.py: at most
  2 x chunked.CHUNK gradient copies), or 'auto' (recompute past gradients.KEEP_UP_TO tasks whose T copies
  exceed gradients.KEEP_BYTES)."""
  from mtl_jax.step import losses
  legacy = losses.legacy_weighting()
  if legacy is not None and method not in (None, legacy):
    raise ValueError(f"both weighting.method={method!r} and the old losses.combine_task_losses.weighting "
                     f"(= {legacy!r}) are set; keep only weighting.method")
  chosen = build(method or legacy or DEFAULT, num_tasks)
  if not isinstance(rep_grad, bool):
    raise ValueError(f"weighting.rep_grad must be True or False, got {rep_grad!r}")
  if rep_grad and isinstance(chosen, base.GradMethod):
    raise ValueError(f"weighting.rep_grad=True is not supported by {chosen.name!r} (it keeps buffers of the "
                     "per-parameter task gradients); drop --gin.weighting.rep_grad")
  if rep_grad and chosen.kind != "gradient":
    raise ValueError(f"weighting.rep_grad=True needs a gradient method, not the {chosen.kind} method {chosen.name!r}; "
                     "drop --gin.weighting.rep_grad or pick e.g. mgda")
  if task_grads not in TASK_GRADS:
    raise ValueError(f"weighting.task_grads must be one of {TASK_GRADS}, got {task_grads!r}")
  chosen.rep_grad, chosen.task_grads = rep_grad, task_grads
  return chosen


def spec_record(num_tasks: int) -> dict:
  """What run_spec.json records: the method and its state's shapes (what a resume must match)."""
  chosen = configured(num_tasks)
  shapes = jax.eval_shape(lambda: chosen.init(num_tasks))
  return {"method": chosen.name, "rep_grad": chosen.rep_grad,
          "state_shapes": {jax.tree_util.keystr(p): list(x.shape)
                           for p, x in jax.tree_util.tree_flatten_with_path(shapes)[0]}}
