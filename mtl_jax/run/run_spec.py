"""What fixes a run's parameter shapes, saved in MODEL_DIR to refuse unsafe resumes.

Resuming into a MODEL_DIR trained with another model size, strategy or task set
would fail deep in orbax with a shape error (or, worse, silently start over). We save
the spec at the first start and compare on every restart, naming what differs.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax

from mtl_jax.run import data_fingerprint
from mtl_jax.input import input_pipeline
from mtl_jax.input import packing
from mtl_jax.step import param_groups
from mtl_jax import weighting
from mtl_jax.models.encoder import EncoderConfig

FILENAME = "run_spec.json"
# EncoderConfig fields a resume may change: same parameters, same values and gradients (remat only
# trades memory for recompute), e.g. to turn remat on after a device OOM.
RESUME_SAFE_ENCODER_FIELDS = ("remat_policy",)


def make(config, sharing: str, task_names, num_classes, abstract_params, start: dict | None = None) -> dict:
  """start: the starting point's entries (starting_point.*.record): 'pretrained' ({'checkpoint': path,
  'sha256': of its weights} or None) and, for init_from, 'init_from' (source run, step, sha256)."""
  shapes = {jax.tree_util.keystr(path): list(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_params)[0]}
  return {"sharing": sharing, "tasks": list(task_names), "num_classes": list(num_classes),
          "encoder": dataclasses.asdict(config), "param_shapes": shapes, "pretrained": None, **(start or {}),
          # the groups fix the optimizer state's shape (frozen params have none)
          "param_groups": _as_json(dataclasses.asdict(param_groups.configured())),
          "data": data_fingerprint.of_tasks(task_names),  # per task; changed data refuses a resume
          "train_example_limit": input_pipeline.train_example_limit(),  # a limited-data regime
          "packing": packing_record(),  # packed rows are another data stream: a resume must not switch it
          "choice_encoding": choice_record(task_names),  # multiple-choice rows' layout (None: no MC task)
          "weighting": weighting.spec_record(len(task_names))}  # its state lives in the checkpoint


def packing_record() -> dict:
  """The packing settings that fix the train stream (log_every does not); {'enabled': False} when off."""
  conf = packing.settings()
  if not conf["enabled"]:
    return {"enabled": False}
  return {k: conf[k] for k in ("enabled", "max_segments", "open_rows")}


def choice_record(task_names) -> str | None:
  """gin choice_encoding.encoding when the run has a multiple-choice task (its rows' layout), else None."""
  from mtl_jax.heads import multiple_choice
  from mtl_jax.input import task_info

  def kind(name):
    try:
      return task_info.get(name).kind
    except ValueError:
      return None
  return multiple_choice.encoding() if any(kind(n) == "multiple_choice" for n in task_names) else None


def _as_json(value):
  return json.loads(json.dumps(value))


def differences(saved: dict, current: dict) -> list[str]:
  diffs = []
  for key in ("sharing", "tasks", "num_classes"):
    if saved.get(key) != current.get(key):
      diffs.append(f"{key} {saved.get(key)!r} -> {current.get(key)!r}")
  no_state = {"method": "equal", "state_shapes": {}}  # runs saved before weighting existed
  old_w, new_w = saved.get("weighting") or no_state, current.get("weighting") or no_state
  if old_w["state_shapes"] != new_w["state_shapes"]:
    diffs.append(f"weighting {old_w['method']!r} -> {new_w['method']!r} (they keep different state)")
  default_groups = _as_json(dataclasses.asdict(param_groups.Groups()))
  if saved.get("param_groups", default_groups) != current["param_groups"]:
    diffs.append(f"param_groups {saved.get('param_groups', default_groups)} -> {current['param_groups']}")
  weights = lambda spec: (spec.get("pretrained") or {}).get("sha256")  # the weights, wherever they are cached
  if weights(saved) != weights(current):
    name = lambda spec: (spec.get("pretrained") or {}).get("checkpoint", "from scratch")
    diffs.append(f"pretrained checkpoint {name(saved)!r} (sha256 {weights(saved)}) -> {name(current)!r} "
                 f"(sha256 {weights(current)})")
  no_limit = {"limit": None, "subset_seed": None}
  if saved.get("train_example_limit", no_limit) != current["train_example_limit"]:
    diffs.append(f"input_pipeline.train_example_limit {saved.get('train_example_limit', no_limit)} -> "
                 f"{current['train_example_limit']}")
  if saved.get("packing", {"enabled": False}) != current.get("packing", {"enabled": False}):
    diffs.append(f"packing {saved.get('packing', {'enabled': False})} -> {current['packing']} (another train "
                 "stream: the resumed run would not be the one it continues)")
  if current.get("choice_encoding") and saved.get("choice_encoding", "one_row") != current["choice_encoding"]:
    was = saved.get("choice_encoding", "one_row")  # runs saved before the per-pair layout: one row
    diffs.append(f"choice_encoding.encoding {was!r} -> {current['choice_encoding']!r} (the multiple-choice rows' "
                 f"layout; resume with --gin.choice_encoding.encoding=\"'{was}'\")")
  source = lambda spec: (spec.get("init_from") or {}).get("sha256")  # another run's trunk (init_from)
  if source(saved) != source(current):
    where = lambda spec: ("{model_dir} step {step}".format(**spec["init_from"]) if spec.get("init_from")
                          else "no init_from")
    diffs.append(f"init_from {where(saved)} (sha256 {source(saved)}) -> {where(current)} (sha256 {source(current)})")
  defaults = {f.name: f.default for f in dataclasses.fields(EncoderConfig)}  # fields added since a run was saved
  for field, value in current["encoder"].items():
    if field in RESUME_SAFE_ENCODER_FIELDS:
      continue
    old = saved.get("encoder", {}).get(field, defaults.get(field))
    if old != value:
      diffs.append(f"EncoderConfig.{field} {old!r} -> {value!r}")
  if not diffs and saved.get("param_shapes") != current["param_shapes"]:
    old, new = saved.get("param_shapes", {}), current["param_shapes"]
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    diffs.append(f"parameter shapes differ at {len(changed)} params, e.g. {changed[0]}: "
                 f"{old.get(changed[0])} -> {new.get(changed[0])}")
  return diffs


def check_compatible(model_dir: pathlib.Path, current: dict) -> None:
  path = model_dir / FILENAME
  if not path.exists():
    return
  try:
    saved = json.loads(path.read_text())
  except ValueError as e:  # truncated or overwritten: name the file (json's own message names none)
    raise ValueError(f"{path} is damaged (not valid JSON: {str(e).splitlines()[0]}); restore it, or move it "
                     "away to resume without the settings check (it is written again), or use a new "
                     "--gin.MODEL_DIR") from None
  diffs = differences(saved, current)
  if diffs:
    raise ValueError(f"MODEL_DIR {model_dir} holds a run with a different model: " + "; ".join(diffs)
                     + ". Use a new --gin.MODEL_DIR, or restore the original settings to resume")
  for changed in data_fingerprint.differences(saved.get("data"), current["data"]):  # old specs: none
    raise ValueError(f"MODEL_DIR {model_dir}: {changed}")


def write(model_dir: pathlib.Path, spec: dict) -> None:
  tmp = model_dir / (FILENAME + ".tmp")  # atomic: a full disk never leaves a truncated spec
  tmp.write_text(json.dumps(spec, indent=1, sort_keys=True))
  tmp.replace(model_dir / FILENAME)
