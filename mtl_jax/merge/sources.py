"""The single-task runs a merge reads: checked to share one starting point, read one tensor at a time.

Why the check: task vectors theta_i - theta_0 only mean something when every run started from the same
theta_0 (Ilharco et al. 2023). run_spec.json records it: the pretrained checkpoint's sha256 and / or the
init_from source's trunk sha256. A run from scratch, or from another checkpoint, is refused in one line
naming it. The runs must also be of one architecture, on disjoint tasks (each task keeps its own head in
the merged model), and either hard-sharing runs or single-task lora runs (read as the plain model they
compute: the frozen trunk plus their low-rank update, so their task vector is that update), or single-task
adapters runs only (their modules merge onto the frozen trunk: merge/adapters.py).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Iterator, Mapping, Sequence

import jax
import numpy as np
from flax import traverse_util

from mtl_jax.run import finished

_LAYER = re.compile(r"(?:^|/)layer_\d+/")


def starting_point(spec: dict) -> tuple[str | None, str | None]:
  """(pretrained sha256, init_from sha256): what theta_0 is."""
  return (spec.get("pretrained") or {}).get("sha256"), (spec.get("init_from") or {}).get("sha256")


def describe_start(spec: dict) -> str:
  parts = []
  if spec.get("pretrained"):
    parts.append(f"pretrained {spec['pretrained'].get('checkpoint')} (sha256 {spec['pretrained']['sha256'][:12]})")
  if spec.get("init_from"):
    parts.append(f"init_from {spec['init_from'].get('model_dir')} step {spec['init_from'].get('step')} "
                 f"(sha256 {spec['init_from']['sha256'][:12]})")
  return " + ".join(parts) or "scratch"


def restore_leaves(state_dir: pathlib.Path, paths: Sequence[str], metadata: Mapping) -> dict[str, np.ndarray]:
  """{params path: array} of only these tensors of a checkpoint's state (orbax partial restore)."""
  import orbax.checkpoint as ocp
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  flat = {tuple(["params", *p.split("/")]): jax.ShapeDtypeStruct(metadata[p].shape, metadata[p].dtype, sharding=device)
          for p in paths}
  item = traverse_util.unflatten_dict(flat)
  restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=device), item)
  restored = ocp.PyTreeCheckpointer().restore(
      state_dir, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True))
  out = traverse_util.flatten_dict(restored["params"], sep="/")
  return {p: np.asarray(jax.device_get(out[p])) for p in paths}


def group_of(path: str) -> str:
  """The tensors restored together: one transformer layer's (`.../layer_k/`), else the tensor alone.
  One orbax restore per tensor costs ~40 ms; per layer it reads ~10 tensors for the price of one."""
  match = _LAYER.search(path)
  return path[:match.end()] if match else path


class RunLeaves(Mapping):
  """A run's params as a lazy {path: array}: an access restores that tensor (and the rest of its layer,
  kept until another layer is asked for) from the checkpoint; the whole model is never in memory."""

  def __init__(self, state_dir: pathlib.Path, metadata: Mapping):
    self.state_dir, self.metadata = state_dir, metadata
    self._group, self._cache = None, {}

  def __getitem__(self, path: str) -> np.ndarray:
    if path not in self.metadata:
      raise KeyError(path)
    group = group_of(path)
    if group != self._group or path not in self._cache:
      members = [p for p in self.metadata if group_of(p) == group]
      self._cache, self._group = {}, None  # drop the previous layer before reading the next
      self._cache, self._group = restore_leaves(self.state_dir, members, self.metadata), group
    return self._cache[path]

  def __iter__(self) -> Iterator[str]:
    return iter(self.metadata)

  def __len__(self) -> int:
    return len(self.metadata)


_LORA_KERNELS = {"attention/query_kernel": "query", "attention/key_kernel": "key", "attention/value_kernel": "value",
                 "attention/out_kernel": "out", "mlp/wi/kernel": "wi", "mlp/wo/kernel": "wo"}


class LoraLeaves(Mapping):
  """A single-task `lora` run as the plain fine-tuned model it computes: {hard-sharing path: array}, each
  adapted kernel W + (alpha / r) A B folded on access (mtl_jax/pretrained/lora_merge.py's arithmetic), so its
  task vector is the low-rank product and every merge method works on it. Paths are matched through
  init_from.trunk_key (the lora trunk is `trunk/layer_k/...`, the hard one `trunk/trunk/layer_k/...`)."""

  def __init__(self, state_dir: pathlib.Path, metadata: Mapping, alpha: float):
    from mtl_jax.transfer import init_from
    self.state_dir, self.metadata, self.alpha = state_dir, metadata, alpha
    self._by_key = {init_from.trunk_key(p): p for p in metadata if init_from.trunk_key(p)}
    self._trunk_key = init_from.trunk_key

  def _source_path(self, path: str) -> str:
    key = self._trunk_key(path)
    if key is None:
      return path  # heads: same names
    if key not in self._by_key:
      raise KeyError(path)
    return self._by_key[key]

  def __getitem__(self, path: str) -> np.ndarray:
    source = self._source_path(path)
    if source not in self.metadata:
      raise KeyError(path)
    key = self._trunk_key(path) or ""
    match = re.match(r"^layer_(\d+)/(.*)$", key)
    target = _LORA_KERNELS.get(match.group(2)) if match else None
    prefix = source[:source.index(f"layer_{match.group(1)}/")] if match else ""
    factors = [f"{prefix}lora_{match.group(1)}/{target}_a", f"{prefix}lora_{match.group(1)}/{target}_b"] \
        if target else []
    factors = [f for f in factors if f in self.metadata]
    got = restore_leaves(self.state_dir, [source, *factors], self.metadata)
    value = got[source]
    if len(factors) == 2:
      a, b = got[factors[0]][0].astype(np.float64), got[factors[1]][0].astype(np.float64)
      value = (value.astype(np.float64) + (self.alpha / a.shape[-1]) * (a @ b).reshape(value.shape)).astype(value.dtype)
    return value

  def __iter__(self) -> Iterator[str]:
    return iter(self.metadata)

  def __len__(self) -> int:
    return len(self.metadata)


@dataclasses.dataclass
class Run:
  model_dir: pathlib.Path
  spec: dict
  step: int

  @property
  def tasks(self) -> list[str]:
    return list(self.spec["tasks"])

  @property
  def state_dir(self) -> pathlib.Path:
    return self.model_dir / "checkpoints" / str(self.step) / "state"

  def param_metadata(self) -> dict:
    import orbax.checkpoint as ocp
    meta = ocp.StandardCheckpointer().metadata(self.state_dir).item_metadata
    tree = getattr(meta, "tree", meta)
    return traverse_util.flatten_dict(tree["params"], sep="/")

  @property
  def sharing(self) -> str:
    return self.spec["sharing"]

  def leaves(self) -> Mapping:
    if self.sharing == "lora":
      from mtl_jax.pretrained import lora_merge
      return LoraLeaves(self.state_dir, self.param_metadata(), lora_merge.run_alpha(self.model_dir))
    return RunLeaves(self.state_dir, self.param_metadata())

  def params(self, hard_paths: Sequence[str] = ()):
    """The whole params tree (Fisher / Gram statistics run the model). A lora run: its update folded in and
    laid out as the hard-sharing model of `hard_paths` (matched through init_from.trunk_key)."""
    from mtl_jax.transfer import init_from
    params = init_from.restore_params(self.model_dir, self.step)[0]
    if self.sharing != "lora":
      return params
    from mtl_jax.pretrained import lora_merge
    folded = traverse_util.flatten_dict(lora_merge.merged_params(params, 0, lora_merge.run_alpha(self.model_dir)),
                                        sep="/")
    by_key = {init_from.trunk_key(p): p for p in folded if init_from.trunk_key(p)}
    hard = {p: folded[by_key[init_from.trunk_key(p)]] if init_from.trunk_key(p) else folded[p] for p in hard_paths}
    return traverse_util.unflatten_dict(hard, sep="/")

  def record(self) -> dict:
    return {"model_dir": str(self.model_dir), "step": self.step, "tasks": self.tasks,
            "starting_point": describe_start(self.spec)}


def open_run(model_dir) -> Run:
  model_dir = pathlib.Path(model_dir).absolute()
  spec, damage = finished.read_json(model_dir / finished.RUN_SPEC)
  if damage or spec is None:
    raise ValueError(f"--runs {str(model_dir)!r}: " + (f"run_spec.json is {damage}" if damage else
                     "has no run_spec.json; point --runs at mtl-train MODEL_DIRs"))
  if spec.get("sharing") not in ("hard", "lora", "adapters"):
    raise ValueError(f"--runs {str(model_dir)!r} is a {spec.get('sharing')!r} run; mtl-merge merges hard-sharing "
                     "runs (one trunk each) and single-task lora / adapters runs (their modules on the frozen trunk)")
  if spec["sharing"] in ("lora", "adapters") and len(spec["tasks"]) != 1:
    raise ValueError(f"--runs {str(model_dir)!r} is a {spec['sharing']} run of {len(spec['tasks'])} tasks; "
                     f"mtl-merge merges single-task {spec['sharing']} runs (one module each)")
  steps = finished.configured_steps(model_dir)
  finished.require_final_checkpoint(model_dir, steps, "mtl-merge --runs")
  committed = finished.committed_steps(model_dir)
  if not committed:
    raise ValueError(f"--runs {str(model_dir)!r} has no checkpoint in checkpoints/; train it first")
  return Run(model_dir, spec, committed[-1])


def _adapter_shapes(run: Run) -> dict:
  return {p: s for p, s in run.spec["param_shapes"].items() if "adapter_" in p}


def open_runs(model_dirs: Sequence) -> list[Run]:
  """The runs, checked: >= 2, one starting point, one architecture, disjoint tasks. One line per refusal."""
  if len(model_dirs) < 2:
    raise ValueError(f"mtl-merge needs at least 2 runs to merge, got {len(model_dirs)}; pass --runs DIR DIR ...")
  runs = [open_run(d) for d in model_dirs]
  first = runs[0]
  for run in runs:
    if starting_point(run.spec) == (None, None):
      raise ValueError(f"run {str(run.model_dir)!r} was trained from scratch: task vectors need one shared starting "
                       "point; fine-tune every run from the same pretrained.checkpoint or init_from.model_dir")
    if starting_point(run.spec) != starting_point(first.spec):
      raise ValueError(f"run {str(run.model_dir)!r} starts from {describe_start(run.spec)} but run "
                       f"{str(first.model_dir)!r} from {describe_start(first.spec)}: merged runs must share one "
                       "starting point")
    if run.spec["encoder"] != first.spec["encoder"]:
      diff = sorted(k for k in run.spec["encoder"] if run.spec["encoder"][k] != first.spec["encoder"].get(k))
      raise ValueError(f"run {str(run.model_dir)!r} has another architecture than {str(first.model_dir)!r} "
                       f"(EncoderConfig.{diff[0]}); merged runs must share one")
  for run in runs:  # adapters runs merge into an adapters run (merge/adapters.py); hard and lora into a hard one
    if (run.sharing == "adapters") != (first.sharing == "adapters"):
      raise ValueError(f"run {str(run.model_dir)!r} is a {run.sharing!r} run but {str(first.model_dir)!r} a "
                       f"{first.sharing!r} run; merge adapters runs only with adapters runs")
    if run.sharing == "adapters" and _adapter_shapes(run) != _adapter_shapes(first):
      raise ValueError(f"run {str(run.model_dir)!r} has other adapters (size / placement) than "
                       f"{str(first.model_dir)!r}; merged adapters runs must share adapters.size and placement")
  seen = {}
  for run in runs:
    for task in run.tasks:
      if task in seen:
        raise ValueError(f"task {task!r} is in runs {str(seen[task])!r} and {str(run.model_dir)!r}; each task "
                         "must come from one run (its head)")
      seen[task] = run.model_dir
  return runs
