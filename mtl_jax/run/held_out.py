"""Held-out test scores at the end of a run: the test split on the checkpoint validation selected,
and on the last one.

Why: every report used to read the final-step validation score, the split on which `best_metric`
picks checkpoints and on which people tune, so selection leaked into the number. Here the test
split is read once per selected checkpoint (not at every eval), and results.json says which split
and which step every number comes from:

  "tasks" / "average"            validation, final step (as before)
  "test" / "test_average"        test, the checkpoint `best_metric` / `best_mode` selected on validation
  "test_last" / "test_last_average"  test, the final step
  "selected_step", "selected_by", "splits"

Tasks without a test split (a task registered with train and validation only; GLUE / SuperGLUE are NOT:
their TFDS validation is the test and a carve of train the validation, tasks/glue_carve.py; a file task
given train only is not either: it gets the hash split) are left out of "test" and named once at start.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import seqio

from mtl_jax.step import evaluation

TEST = "test"


def _has_test(name: str) -> bool:
  return TEST in seqio.get_mixture_or_task(name).splits


class HeldOut:
  """The test batches of the run's tasks (built once) and the end-of-run record."""

  def __init__(self, task_names: Sequence[str], feature_lengths, batch_size: int):
    self.tasks = tuple(n for n in task_names if _has_test(n))
    self.missing = tuple(n for n in task_names if n not in self.tasks)
    self.evaluator = (evaluation.Evaluator(self.tasks, feature_lengths, batch_size,
                                           splits=lambda task: (TEST,), main_split=TEST)
                      if self.tasks else None)

  def note(self) -> str | None:
    """One line naming the tasks whose test score cannot be reported, and the fix."""
    if not self.missing:
      return None
    return (f"mtl_jax: no test split for {', '.join(self.missing)}: their held-out test score is left out of "
            "results.json; give a file task a test file (or none: the hash split carves one), or register the task "
            "with a 'test' split")

  def record(self, predict_selected: Callable, predict_last: Callable, selected_step: int, final_step: int,
             selected_by: str) -> dict:
    """The test keys of results.json. `predict_*(batch) -> {kind: predictions}` of the two checkpoints
    (the same function twice when the final step is the selected one: the test is then read once)."""
    out = {"selected_step": int(selected_step), "selected_by": selected_by,
           "splits": {"tasks": "validation", "test": TEST, "test_last": TEST}}
    if self.evaluator is None:
      return {**out, "test": {}, "test_last": {}}
    selected = self.evaluator.evaluate(predict_selected)
    last = selected if selected_step == final_step else self.evaluator.evaluate(predict_last)
    return {**out, "test": selected["tasks"], "test_average": selected["average"],
            "test_last": last["tasks"], "test_last_average": last["average"]}


def selected_by(best_metric: str, best_mode: str) -> str:
  return f"validation {best_metric} ({best_mode})"


def merge(record: Mapping, test_record: Mapping) -> dict:
  return {**record, **test_record}


def _restore_params(ckpt, step: int, abstract_state):
  """The params of the best checkpoint (`checkpoints_best/<step>`), placed as the train state's."""
  import orbax.checkpoint as ocp
  ckpt.best.wait_until_finished()
  restored = ckpt.best.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
  return restored.state.params


def finish(held_out: HeldOut, record: Mapping, ckpt, steps, state, best_metric: str, best_mode: str) -> dict:
  """The final evaluation `record` plus its test keys. Call after `ckpt.maybe_save_best` has seen the
  final evaluation, so `best.json` names the checkpoint validation selected over the whole run."""
  final = int(state.step)
  best = ckpt.best_record()
  selected = int(best["step"]) if best is not None and best.get("metric") == best_metric else final
  last = lambda batch: steps.run_predict(state.params, batch)  # noqa: E731
  if selected == final:
    chosen = last
  else:
    params = _restore_params(ckpt, selected, steps.abstract_state)
    chosen = lambda batch: steps.run_predict(params, batch)  # noqa: E731
  return merge(record, held_out.record(chosen, last, selected, final, selected_by(best_metric, best_mode)))
