"""Is a MODEL_DIR's run finished? Its results.json is at the final step AND that step's checkpoint is committed.

Why: results.json alone is not proof. A kill between the final evaluation and the end of the (asynchronous)
final save, a deleted checkpoints/ or a half-copied directory leaves results.json at the final step with an
older (or no) checkpoint, and a transfer target started from that run silently gets the older trunk. The
trainer writes the final results.json only after the final checkpoint is committed
(checkpoints.Checkpoints.results_after_save); everything that decides "finished" (mtl-compare / mtl-transfer's
skip check, init_from) asks `state()` here. No JAX import: mtl-compare reads cells without it.

Every damaged file is described in ONE line naming the file and what happens / what to do.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

RESULTS = "results.json"
RUN_SPEC = "run_spec.json"
CHECKPOINTS = "checkpoints"
_TRAIN_STEPS = re.compile(r"^TRAIN_STEPS\s*=\s*(\d+)\s*$", re.M)


def configured_steps(model_dir) -> int | None:
  """TRAIN_STEPS from the config.gin the trainer wrote into MODEL_DIR, or None."""
  try:
    m = _TRAIN_STEPS.search((pathlib.Path(model_dir) / "config.gin").read_text())
  except OSError:
    return None
  return int(m.group(1)) if m else None


def committed_steps(model_dir) -> list[int]:
  """Steps whose checkpoint orbax has committed (renamed from its tmp dir, with both items)."""
  folder = pathlib.Path(model_dir) / CHECKPOINTS
  return sorted(int(p.name) for p in (folder.iterdir() if folder.is_dir() else ())
                if p.name.isdigit() and (p / "state").is_dir() and (p / "meta").is_dir())


def _one_line(error: Exception) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


def read_json(path: pathlib.Path) -> tuple[dict | None, str | None]:
  """(content, None), (None, None) when the file is absent, or (None, why it is damaged)."""
  try:
    text = path.read_text()
  except FileNotFoundError:
    return None, None
  except OSError as e:
    return None, f"unreadable ({_one_line(e)})"
  try:
    value = json.loads(text)
  except ValueError as e:
    return None, f"not valid JSON ({_one_line(e)}{'; empty file' if not text.strip() else ''})"
  if not isinstance(value, dict):
    return None, f"not a JSON object (a {type(value).__name__})"
  return value, None


@dataclasses.dataclass(frozen=True)
class State:
  finished: bool
  step: int | None = None        # results.json's step (None: missing or damaged)
  problem: str | None = None     # one line: the damaged / inconsistent file and what it means


def state(model_dir, final_step: int | None) -> State:
  """Whether MODEL_DIR holds a finished run of `final_step` steps (None: unknown, never finished)."""
  model_dir = pathlib.Path(model_dir)
  path = model_dir / RESULTS
  record, damage = read_json(path)
  if damage:
    return State(False, None, f"{path} is {damage}")
  if record is None:
    return State(False)
  try:
    step = int(record["step"])
  except (KeyError, TypeError, ValueError):
    return State(False, None, f"{path} has no integer 'step' (damaged)")
  if final_step is None or step < final_step:
    return State(False, step)
  committed = committed_steps(model_dir)
  if step not in committed:
    newest = f"newest committed: step {committed[-1]}" if committed else "no committed checkpoint"
    return State(False, step, f"{path} is at step {step} but its checkpoint {model_dir / CHECKPOINTS / str(step)} "
                              f"is missing ({newest})")
  _, spec_damage = read_json(model_dir / RUN_SPEC)
  if spec_damage:
    return State(False, step, f"{model_dir / RUN_SPEC} is {spec_damage}")
  return State(True, step)


def require_final_checkpoint(model_dir, final_step: int | None, what: str) -> None:
  """Refuses a source run whose results.json claims a step whose checkpoint is not committed (init_from)."""
  found = state(model_dir, final_step)
  if found.problem and found.step is not None and final_step is not None and found.step >= final_step:
    raise ValueError(f"{what} {str(model_dir)!r} did not finish cleanly: {found.problem}; rerun the source "
                     "(its same command resumes and finishes it), then this run")
