"""Start a run's trunk from another run's checkpoint (t5x's `init_from`), any strategy -> any strategy.

    init_from.model_dir = '/runs/intermediate'   # a finished (or running) mtl-train MODEL_DIR
    init_from.step = 'latest'                     # 'latest' | 'best' | a saved step
    init_from.task = None                         # which trunk of a per-task source:
                                                  #   soft / sluice / cross_stitch: a task name or 'mean'
                                                  #   mmoe: an expert index or 'mean'
    init_from.expert_noise = 0.0                  # MMoE target: relative noise on experts 1..E-1

The source's trunk is reduced to ONE plain encoder (embedder, `layer_{k}/...`, the closing
LayerNorm) and then written into every trunk copy of the new run by the same path rule as a
pretrained checkpoint (`pretrained.load.into_params`): hard -> hard copies it, -> soft / sluice /
cross-stitch copies it onto every tower / column, -> MMoE onto every expert. Heads (and alphas,
betas, gates) start fresh: the new run may have a new task set. The architecture is the source's
(run_spec.json); the new run must tokenize the same way (the same pretrained.checkpoint, or none).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re

import gin
import jax
import numpy as np
from flax import traverse_util

from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.pretrained import load
from mtl_jax.run import finished

PER_TASK = ("soft", "sluice", "cross_stitch")
_LN_FINAL = re.compile(r"(?:^|/)ln_final/(?:LayerNorm_0/)?(scale|bias)$")


@gin.configurable("init_from")
@dataclasses.dataclass(frozen=True)
class InitFrom:
  model_dir: str | None = None
  step: str | int = "latest"
  task: str | int | None = None
  expert_noise: float = 0.0

  def __post_init__(self):
    if self.step not in ("latest", "best") and not (isinstance(self.step, int) and self.step > 0):
      raise ValueError(f"init_from.step must be 'latest', 'best' or a saved step > 0, got {self.step!r}")
    if not self.expert_noise >= 0:
      raise ValueError(f"init_from.expert_noise must be >= 0, got {self.expert_noise!r}")


def current() -> InitFrom:
  return InitFrom()


def trunk_key(path: str) -> str | None:
  """A param path -> its name in a plain encoder (None: heads, alphas, betas, gates). A layer's own
  closing norm (T5 / ModernBERT: `layer_{K-1}/ln_final`) keeps its layer path, as the checkpoint names it;
  only the pre-LN trunk's own `ln_final` is the plain `ln_final/`."""
  key = load.checkpoint_key(path)
  if key is not None and key.startswith("layer_"):
    return key
  m = _LN_FINAL.search(path)
  if m:
    return f"ln_final/{m.group(1)}"
  return key


def read_spec(model_dir: pathlib.Path) -> dict:
  spec_file = model_dir / "run_spec.json"
  if not spec_file.is_file():
    raise ValueError(f"init_from.model_dir {str(model_dir)!r} has no run_spec.json; point it at an mtl-train MODEL_DIR")
  spec, damage = finished.read_json(spec_file)
  if damage:
    raise ValueError(f"init_from.model_dir: {spec_file} is {damage}; rerun the source (it writes the file again)")
  return spec


def encoder_config(spec: dict) -> EncoderConfig:
  fields = {f.name for f in dataclasses.fields(EncoderConfig)}
  return EncoderConfig(**{k: v for k, v in spec["encoder"].items() if k in fields})


def restore_params(model_dir: pathlib.Path, step: str | int = "latest"):
  """(params, step) of a run's checkpoint, restored onto one device whatever mesh saved it. 'latest' of a
  source whose results.json claims the final step is that step's checkpoint or a refusal, never an older one."""
  import orbax.checkpoint as ocp
  from mtl_jax.run import quiet_orbax
  quiet_orbax.install()  # every reader of runs (init_from, taskemb, merge, predict): no orbax metadata notes
  if step == "latest":
    finished.require_final_checkpoint(model_dir, finished.configured_steps(model_dir), "init_from.model_dir")
  folder = model_dir / ("checkpoints_best" if step == "best" else "checkpoints")
  manager = ocp.CheckpointManager(folder, item_names=("state", "meta")) if folder.is_dir() else None
  try:
    saved = sorted(manager.all_steps()) if manager else []
    if not saved:
      raise ValueError(f"MODEL_DIR {str(model_dir)!r} has no checkpoint in {folder.name}/; train it first")
    chosen = saved[-1] if step in ("latest", "best") else step
    if chosen not in saved:
      raise ValueError(f"MODEL_DIR {str(model_dir)!r} has no checkpoint at step {step}; saved steps: {saved}")
    metadata = ocp.StandardCheckpointer().metadata(folder / str(chosen) / "state").item_metadata
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                            getattr(metadata, "tree", metadata))
    state = manager.restore(chosen, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))).state
  finally:
    if manager:
      manager.close()
  return state["params"], int(chosen)


def _slice_index(sharing: str, tasks: list, choice, stack: int) -> int | str:
  """Which slice of a per-task / per-expert stack the plain encoder is, or 'mean'."""
  if choice == "mean":
    return "mean"
  if sharing == "mmoe":
    if not isinstance(choice, int) or isinstance(choice, bool) or not 0 <= choice < stack:
      raise ValueError(f"the source is an mmoe run with {stack} experts: set init_from.task to an expert "
                       f"index 0..{stack - 1} or 'mean', got {choice!r}")
    return choice
  if choice not in tasks:
    raise ValueError(f"the source is a {sharing} run with one trunk per task: set init_from.task to one of "
                     f"{', '.join(tasks)} or 'mean', got {choice!r}")
  return tasks.index(choice)


def plain_encoder(params, spec: dict, choice=None) -> dict[str, np.ndarray]:
  """The source params as one plain encoder: {trunk_key: array}, stacks sliced or averaged."""
  sharing, tasks = spec["sharing"], list(spec["tasks"])
  stacked = sharing in PER_TASK or sharing == "mmoe"
  if not stacked and choice is not None:
    raise ValueError(f"the source is a {sharing} run with one trunk; leave init_from.task unset, got {choice!r}")
  out = {}
  for path, leaf in traverse_util.flatten_dict(params, sep="/").items():
    key = trunk_key(path)
    if key is None:
      continue
    value = np.asarray(jax.device_get(leaf), np.float32)
    # soft keeps untied params under trunk/shared/ (one copy); every other trunk param is a stack
    is_stack = stacked and not key.startswith("embedder/") and (
        "/experts/" in f"/{path}" if sharing == "mmoe" else not path.startswith("trunk/shared/"))
    if is_stack:
      if choice is None:
        what = "an expert index or 'mean'" if sharing == "mmoe" else f"one of {', '.join(tasks)} or 'mean'"
        raise ValueError(f"the source is a {sharing} run with one trunk per {'expert' if sharing == 'mmoe' else 'task'}: "
                         f"set init_from.task to {what}")
      index = _slice_index(sharing, tasks, choice, value.shape[0])
      value = value.mean(axis=0) if index == "mean" else value[index]
    if key in out:
      raise ValueError(f"source params hold encoder tensor {key!r} twice (at {path!r})")
    out[key] = value
  return out


def fingerprint(flat: dict[str, np.ndarray]) -> str:
  """sha256 of the plain encoder's names and float32 bytes (what the new run starts from)."""
  digest = hashlib.sha256()
  for key in sorted(flat):
    digest.update(key.encode())
    digest.update(np.ascontiguousarray(flat[key], np.float32).tobytes())
  return digest.hexdigest()


def into_params(params, flat: dict[str, np.ndarray], expert_noise: float = 0.0, seed: int = 0):
  """The new run's initialised params with every trunk copy set from the plain encoder."""
  return load.into_params(params, flat, expert_noise, seed, key_fn=trunk_key)
