"""Where in trainer.train an exception came from: its step, MODEL_DIR and the objects in scope.

Why: the one-line messages for disk full and device OOM must name the step, the batch
size, the strategy and the state's size, all of which train() holds as locals. Reading
them from the traceback keeps train() free of bookkeeping for failures it never handles.
"""

from __future__ import annotations


def chain(error: BaseException):
  """The error and every exception it was raised from or during (cause / context)."""
  seen = []
  while error is not None and all(error is not e for e in seen):
    seen.append(error)
    error = error.__cause__ or error.__context__
  return seen


def frames(error: BaseException):
  """(file name, function name, locals) of every frame the error chain passed through, outermost first."""
  out = []
  for e in chain(error):
    tb = e.__traceback__
    while tb is not None:
      code = tb.tb_frame.f_code
      out.append((code.co_filename, code.co_name, tb.tb_frame.f_locals))
      tb = tb.tb_next
  return out


def train_locals(error: BaseException) -> dict:
  """trainer.train's local variables where the error passed through it ({} if it did not)."""
  for filename, name, local in frames(error):
    if name == "train" and filename.endswith("trainer.py"):
      return local
  return {}


def step_of(local: dict) -> int | None:
  """The loop's step, else the step training started from (failures before the first step)."""
  step = local.get("step", local.get("start"))
  return int(step) if isinstance(step, int) else None


def close_progress_bar(error: BaseException) -> None:
  """Ends train()'s tqdm bar, so the error line starts a line of its own."""
  bar = train_locals(error).get("bar")
  if bar is not None and hasattr(bar, "close"):
    bar.close()
