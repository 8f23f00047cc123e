"""The merged run: an ordinary hard-sharing MODEL_DIR of every source run's tasks.

Why an ordinary run: evaluation, mtl-predict, export and init_from read a MODEL_DIR through config.gin,
run_spec.json and an orbax checkpoint of the TrainState. So the merged directory holds exactly those:
config.gin is the first run's (its tokenizer, architecture and starting point settings) with the task set
replaced by a `from_files.mixture` of every run's tasks (registered again by any process that parses it);
run_spec.json is what the trainer would write for it (the same starting point record, so mtl-train on
this config.gin resumes it and evaluates, as any finished run) plus a 'merge' entry (sources, method,
hyperparameters); the checkpoint is the merged params at step TRAIN_STEPS with a fresh optimizer state.
Each task's head is its own run's head slice; the trunk (embedder included) is the merge.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import tempfile

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mtl_jax.merge import sources

HEADS = ("heads/kernel", "heads/bias")


@gin.configurable(module="mtl_jax.merge")
def run_settings(model_dir=gin.REQUIRED, mixture_or_task_name=gin.REQUIRED, task_feature_lengths=gin.REQUIRED,
                 train_steps=gin.REQUIRED, batch_size=gin.REQUIRED, seed=0, eval_batch_size=None):
  """trainer.train's settings as the merged config.gin resolves them."""
  return dict(model_dir=model_dir, mixture=mixture_or_task_name, lengths=dict(task_feature_lengths),
              train_steps=int(train_steps), batch_size=int(batch_size), seed=int(seed),
              eval_batch_size=int(eval_batch_size or batch_size))


def mixture_name(tasks) -> str:
  return "mtl_merge_" + hashlib.sha256(",".join(sorted(tasks)).encode()).hexdigest()[:10]


def config_text(runs: list[sources.Run], out_dir: pathlib.Path) -> str:
  tasks = sorted(t for r in runs for t in r.tasks)
  return (runs[0].model_dir / "config.gin").read_text() + f"""

# ---- mtl-merge: {len(runs)} runs merged into one hard-sharing run of all their tasks ----
import tasks.from_files
MIXTURE_OR_TASK_NAME = @from_files.mixture()
from_files.mixture.name = {mixture_name(tasks)!r}
from_files.mixture.tasks = {tasks!r}
MODEL_DIR = {str(out_dir)!r}
train.mixture_or_task_name = %MIXTURE_OR_TASK_NAME
train.model_dir = %MODEL_DIR
train.sharing = {'adapters' if runs[0].sharing == 'adapters' else 'hard'!r}
""" + ("" if runs[0].sharing != "lora" else """\
param_groups.freeze = []   # the lora run's frozen-trunk rules: the merged run is a plain hard-sharing run
param_groups.rules = []
""")


def check_out_dir(out_dir) -> pathlib.Path:
  out = pathlib.Path(out_dir).absolute()
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise ValueError(f"--out {str(out)!r} already exists and is not an empty directory; choose a new directory "
                     "(mtl-merge never writes over a run)")
  return out


class _ParamsOnly:
  """What starting_point.*.init_state asks of Steps, without the optimizer state: theta_0 is all a merge needs."""

  def __init__(self, steps, length: int):
    from mtl_jax.step.steps import TrainState, dummy_batch
    self.seed, self._steps, self._state = steps.seed, steps, TrainState
    self._example = dummy_batch(steps.mesh.shape["data"], length)

  def init_state(self):
    init = jax.jit(lambda rng: nn.meta.unbox(self._steps.model.init(rng, self._example)["params"]),
                   out_shardings=self._steps.state_shardings.params)
    with jax.set_mesh(self._steps.mesh):
      return self._state(step=0, params=init(jax.random.key(self.seed)), opt_state=None)


@dataclasses.dataclass
class Target:
  """The merged run's model, Steps (one device) and run_spec, built from its config.gin."""
  out_dir: pathlib.Path
  runs: list
  text: str
  settings: dict
  names: list
  infos: list
  steps: object
  spec: dict
  start_from: object

  @property
  def sharing(self) -> str:
    return self.spec["sharing"]

  @property
  def kinds(self):
    return [i.kind for i in self.infos]

  def base_params(self) -> dict[str, np.ndarray]:
    """theta_0 as the merged model's flat params (the starting point written into a fresh model)."""
    state = self.start_from.init_state(_ParamsOnly(self.steps, self.settings["lengths"]["inputs"]))
    return {p: np.asarray(v) for p, v in traverse_util.flatten_dict(jax.device_get(state.params), sep="/").items()}

  def heads(self) -> dict[str, np.ndarray]:
    """Every task's head: its own run's head slice, placed at the task's index in the merged [T, D, C]."""
    shapes = {p: tuple(s) for p, s in self.spec["param_shapes"].items()}
    kernel = np.zeros(shapes["['heads']['kernel']"], np.float32)
    bias = np.zeros(shapes["['heads']['bias']"], np.float32)
    for run in self.runs:
      leaves = run.leaves()
      k, b = leaves["heads/kernel"], leaves["heads/bias"]
      for j, task in enumerate(run.tasks):
        t, c = self.names.index(task), run.spec["num_classes"][j]
        kernel[t, :, :c], bias[t, :c] = k[j, :, :c], b[j, :c]
    return {"heads/kernel": kernel, "heads/bias": bias}

  def device_params(self, flat: dict[str, np.ndarray]):
    params = traverse_util.unflatten_dict({tuple(p.split("/")): v for p, v in flat.items()})
    return jax.device_put(params, self.steps.state_shardings.params)

  def write(self, flat: dict[str, np.ndarray], merge_record: dict, validation: dict) -> None:
    """config.gin, run_spec.json, the checkpoint at TRAIN_STEPS, then results.json (validation) and merge.json."""
    import json
    from mtl_jax.run import checkpoints, run_spec
    from mtl_jax.step import evaluation
    from mtl_jax.step.steps import TrainState
    steps, train_steps = self.steps, self.settings["train_steps"]
    self.out_dir.mkdir(parents=True, exist_ok=True)
    (self.out_dir / "config.gin").write_text(self.text)
    run_spec.write(self.out_dir, {**self.spec, "merge": merge_record})
    params = self.device_params(flat)
    with jax.set_mesh(steps.mesh):
      opt_state = jax.jit(steps.tx.init, out_shardings=steps.state_shardings.opt_state)(params)
      weighting = jax.device_put(steps.weighting.init_with_params(len(self.names), params),
                                 steps.state_shardings.weighting)  # buffer methods size theirs from params
    state = TrainState(step=jnp.asarray(train_steps, jnp.int32), params=params, opt_state=opt_state,
                       weighting=weighting)
    ckpt = checkpoints.Checkpoints(self.out_dir, keep=1, period=1)
    ckpt.save(train_steps, state, {"batches_consumed": train_steps, "mixing_counts": [0] * len(self.names)},
              force=True)
    ckpt.close()
    evaluation.write_results(self.out_dir, train_steps, validation)  # after the checkpoint is committed
    (self.out_dir / "merge.json").write_text(json.dumps(merge_record, indent=1, sort_keys=True))


def build(runs: list[sources.Run], out_dir) -> Target:
  """Parses the merged config.gin (nothing written) and checks it starts where the runs started."""
  from mtl_jax import train
  from mtl_jax.input import input_pipeline, task_info
  from mtl_jax.models.multitask import build_model
  from mtl_jax.run import run_spec, starting_point
  from mtl_jax.scale import partitioning
  from mtl_jax.step import optim
  from mtl_jax.step.steps import Steps
  out_dir = check_out_dir(out_dir)
  text = config_text(runs, out_dir)
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "config.gin"
    path.write_text(text)
    train.parse_gin([str(path)], [])
  for param in ("model_dir", "mixture_or_task_name", "task_feature_lengths", "train_steps", "batch_size", "seed",
                "eval_batch_size"):
    try:
      value = gin.query_parameter(f"trainer.train.{param}")
    except ValueError:  # not bound: the default
      continue
    gin.bind_parameter(f"mtl_jax.merge.run_settings.{param}", value)
  settings = run_settings()
  provider = input_pipeline.get_provider(settings["mixture"])
  names = list(input_pipeline.task_names(provider))
  infos = task_info.get_all(names)
  start_from = starting_point.for_run()
  config = start_from.encoder_config(provider.output_features["inputs"].vocabulary.vocab_size)
  sharing = "adapters" if runs[0].sharing == "adapters" else "hard"  # adapters: merge/adapters.py
  model = build_model(config, sharing, [i.num_classes for i in infos])
  tx, _ = optim.make_optimizer(settings["train_steps"])
  mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
  steps = Steps(model, tx, [i.kind for i in infos], mesh, partitioning.logical_axis_rules(), settings["seed"],
                settings["eval_batch_size"], settings["lengths"]["inputs"])
  spec = run_spec.make(config, sharing, names, [i.num_classes for i in infos], steps.abstract_state.params,
                       start_from.record)
  if sources.starting_point(spec) != sources.starting_point(runs[0].spec):
    raise ValueError(f"the runs started from {sources.describe_start(runs[0].spec)} but their config.gin now starts "
                     f"from {sources.describe_start(spec)} (the checkpoint or init_from source changed since); "
                     "merge runs whose starting point is still there")
  return Target(out_dir, runs, text, settings, names, infos, steps, spec, start_from)
