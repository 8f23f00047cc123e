"""train(): the loop — build data, model, sharded state; resume; step; log; eval; checkpoint.

Everything is checked before anything is written: a bad setting or bad data stops the
run with one clear error and leaves MODEL_DIR as it was. Then: restore the newest
readable checkpoint (config must match), train with SIGTERM/SIGINT saving a
checkpoint and exiting 0, non-finite losses stopping (or skipped, if configured)
without ever reaching a checkpoint, periodic eval and a best-by-validation copy.
"""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import time

import gin
import jax
import numpy as np
import seqio
import tqdm
from jax.experimental import multihost_utils
from clu import metric_writers

from mtl_jax.run import checkpoints
from mtl_jax.step import evaluation, optim
from mtl_jax.input import features, input_pipeline, mixing_monitor, truncation
from mtl_jax.scale import partitioning
from mtl_jax.run import eval_schedule, held_out, lock, run_spec, seeds_in_step, starting_point
from mtl_jax.step import step_hooks, steps as steps_lib
from mtl_jax.input import task_info
from mtl_jax.models.multitask import build_model
from mtl_jax.predict import manifest as predict_manifest
from mtl_jax.sharing import inspect as sharing_inspect

log = logging.getLogger("mtl_jax")
NONFINITE_POLICIES = ("stop", "skip")


class NonFiniteError(RuntimeError):
  """A loss or gradient became NaN/Inf (policy 'stop')."""


def _positive_int(name: str, value) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value!r}; set --gin.{name}=<int>")
  return value


def param_counts(params) -> dict[str, int]:
  """Parameter count per top-level module (embedder / trunk / heads), in total, and trainable (not frozen)."""
  counts = {k: int(sum(np.prod(x.shape) for x in jax.tree.leaves(v))) for k, v in params.items()}
  counts["total"] = sum(counts.values())
  counts["trainable"] = optim.trainable_count(params)  # = total unless param groups freeze some
  return counts


def check_model_dir(model_dir) -> pathlib.Path:
  """MODEL_DIR must be (creatable as) a writable directory; checked without creating it."""
  if not isinstance(model_dir, (str, os.PathLike)) or not str(model_dir):
    got = "nothing (no gin file or flag sets it)" if model_dir is gin.REQUIRED else repr(model_dir)
    raise ValueError(f"MODEL_DIR must be a directory path, got {got}; set --gin.MODEL_DIR=/path/to/run")
  path = pathlib.Path(model_dir).absolute()
  probe = path
  while not probe.exists():
    probe = probe.parent
  if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
    why = "is not a directory" if not probe.is_dir() else "is not writable"
    raise ValueError(f"MODEL_DIR {str(path)!r} cannot be created: {str(probe)!r} {why}; "
                     "choose another --gin.MODEL_DIR")
  return path


def _check_best_metric(best_metric: str, mode: str, names) -> None:
  if mode not in ("max", "min"):
    raise ValueError(f"train.best_mode must be 'max' or 'min', got {mode!r}")
  if best_metric != "average":
    task = best_metric.split("/", 1)[0]
    if "/" not in best_metric or task not in names:
      raise ValueError(f"train.best_metric {best_metric!r} must be 'average' or '<task>/<metric>' "
                       f"with a task of this run: {', '.join(names)}")


def _score(record: dict, best_metric: str) -> float:
  if best_metric == "average":
    return record["average"]
  task, metric = best_metric.split("/", 1)
  if metric not in record["tasks"][task]:
    raise ValueError(f"train.best_metric {best_metric!r}: task {task!r} reports "
                     f"{sorted(record['tasks'][task])}, not {metric!r}")
  return record["tasks"][task][metric]


class _Preemption:
  """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

  def __init__(self):
    self.signal_name = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    self.signal_name = signal.Signals(signum).name

  def requested(self) -> bool:
    """True on every process once any process got a signal (they must save together)."""
    if jax.process_count() == 1:
      return self.signal_name is not None
    stop = bool(multihost_utils.process_allgather(np.bool_(self.signal_name is not None)).any())
    self.signal_name = self.signal_name or ("SIGTERM" if stop else None)
    return stop

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _nonfinite(metrics, names, step: int, policy: str, ckpt, bar) -> int:
  """A non-finite step: raise (policy 'stop', the last checkpoint intact) or count it as skipped."""
  m = jax.device_get(metrics)
  bad = [n for t, n in enumerate(names) if m["task_count"][t] > 0 and not np.isfinite(m["task_loss"][t])]
  where = f"task(s) {', '.join(bad)}" if bad else "the gradient or penalty (task losses are finite)"
  if policy == "stop":
    bar.close()
    ckpt.close()
    last = ckpt.latest_step()
    kept = f"the last checkpoint (step {last}) is intact" if last else "no checkpoint was written"
    raise NonFiniteError(f"non-finite loss at step {step} in {where}; the update was not applied and "
                         f"{kept}. Lower the learning rate, check the data, or set "
                         "--gin.trainer.train.on_nonfinite=skip")
  log.warning("skipped non-finite update at step %d in %s", step, where)
  return 1


@gin.configurable(denylist=["progress"])
def train(
    model_dir: str = gin.REQUIRED,
    mixture_or_task_name: str = gin.REQUIRED,
    task_feature_lengths: dict = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    sharing: str = "hard",
    seed: int = 0,
    seeds: list | None = None,
    eval_period: int = 100,
    checkpoint_period: int = 100,
    keep_checkpoints: int = 3,
    log_period: int = 10,
    eval_batch_size: int | None = None,
    on_nonfinite: str = "stop",
    best_metric: str = "average",
    best_mode: str = "max",
    progress: bool = True,
) -> dict:
  """Trains (or resumes) and returns the final evaluation record (also in results.json)."""
  if seeds is not None:  # K seeds, one vmapped step, a MODEL_DIR each: {seed: record} (run/seeds_in_step.py)
    return seeds_in_step.train(train, dict(locals()))
  # ---- 1. settings (nothing is written until every check below has passed) ----
  train_steps = _positive_int("TRAIN_STEPS", train_steps)
  batch_size = _positive_int("BATCH_SIZE", batch_size)
  length = features.check_feature_lengths(task_feature_lengths)
  for name in ("eval_period", "checkpoint_period", "keep_checkpoints", "log_period"):
    _positive_int(f"train.{name}", locals()[name])
  eval_period = eval_schedule.period(eval_period, train_steps)  # a run shorter than it still draws curves
  if eval_batch_size is not None:
    _positive_int("train.eval_batch_size", eval_batch_size)
  if not isinstance(seed, int) or seed < 0:
    raise ValueError(f"train.seed must be an int >= 0, got {seed!r}")
  if on_nonfinite not in NONFINITE_POLICIES:
    raise ValueError(f"train.on_nonfinite must be one of {NONFINITE_POLICIES}, got {on_nonfinite!r}")
  model_dir = check_model_dir(model_dir)
  lock.hold(model_dir)  # before any costly build; refuses a second trainer (run/lock.py); none left if we fail
  provider = input_pipeline.get_provider(mixture_or_task_name)
  names = input_pipeline.task_names(provider)
  _check_best_metric(best_metric, best_mode, names)
  infos = task_info.get_all(names)
  start_from = starting_point.for_run(seed)  # from scratch, a pretrained checkpoint or a run
  config = start_from.encoder_config(provider.output_features["inputs"].vocabulary.vocab_size)
  if config.max_len < length:
    raise ValueError(f"TASK_FEATURE_LENGTHS['inputs']={length} exceeds EncoderConfig.max_len={config.max_len}; "
                     "raise EncoderConfig.max_len or shorten the inputs")
  mesh = partitioning.make_mesh()
  rules = partitioning.logical_axis_rules()
  data_size, model_size, procs = mesh.shape["data"], mesh.shape["model"], jax.process_count()
  for name, size in (("BATCH_SIZE", batch_size), ("train.eval_batch_size", eval_batch_size or batch_size)):
    if size % data_size or size % procs:
      raise ValueError(f"{name}={size} is not divisible by the mesh's data axis ({data_size}) "
                       f"and process count ({procs}); use a multiple of {int(np.lcm(data_size, procs))}")
  for field in ("num_heads", "mlp_dim"):  # the model axis splits attention heads and the MLP
    if getattr(config, field) % model_size:
      raise ValueError(f"EncoderConfig.{field}={getattr(config, field)} is not divisible by the mesh's model "
                       f"axis ({model_size}); pick a multiple of {model_size} or a smaller make_mesh.mesh_shape")
  layout = input_pipeline.batch_layout()
  if layout == "grouped":  # any BATCH_SIZE: task groups padded with weight-0 rows (input_pipeline.grouped_rows)
    input_pipeline.check_grouped(batch_size, procs, len(names), data_size)
  model = build_model(config, sharing, [i.num_classes for i in infos])
  tx, schedule = optim.make_optimizer(train_steps)
  steps = steps_lib.Steps(model, tx, [i.kind for i in infos], mesh, rules, seed, batch_size, length,
                          grouped=layout == "grouped")
  steps = seeds_in_step.lane_steps(steps)  # in a train.seeds lane: its steps go through the shared vmapped step
  spec = run_spec.make(config, sharing, names, [i.num_classes for i in infos], steps.abstract_state.params,
                       start_from.record)
  run_spec.check_compatible(model_dir, spec)

  # ---- 2. data (bad labels / empty splits fail here, still before any write) ----
  for name in names:  # builds each train source once: example validation runs here
    seqio.get_mixture_or_task(name).source.get_dataset("train", shuffle=False)
  evaluator = evaluation.Evaluator(names, task_feature_lengths, eval_batch_size or batch_size)
  test_split = held_out.HeldOut(names, task_feature_lengths, eval_batch_size or batch_size)  # read at the end only
  monitor = mixing_monitor.MixingMonitor.from_provider(provider, layout)

  # ---- 3. state: resume from the newest readable checkpoint, else initialise ----
  lead = jax.process_index() == 0
  ckpt = checkpoints.Checkpoints(model_dir, keep=keep_checkpoints, period=checkpoint_period)
  restored = ckpt.restore_latest_good(steps.abstract_state)
  if restored is not None:
    state, meta, latest = restored
    start = int(meta["batches_consumed"])
    monitor.counts[:] = meta.get("mixing_counts", monitor.counts.tolist())
    print(f"mtl_jax: resuming from checkpoint at step {latest} in {model_dir}", flush=True)
  else:
    state, start = start_from.init_state(steps), 0
  if lead:
    (model_dir / "config.gin").write_text(gin.config_str())
    run_spec.write(model_dir, spec)
    predict_manifest.write(model_dir, names, task_feature_lengths)  # a later mtl-predict skips TF (predict/fast.py)
  counts = param_counts(state.params)
  print(f"mtl_jax: sharing={sharing} tasks={len(names)} layout={layout} parameters " +
        " ".join(f"{k}={v:,}" for k, v in counts.items()) + optim.groups_note(state.params), flush=True)
  if lead and test_split.note():
    print(test_split.note(), flush=True)
  if lead:  # how many validation examples the input length cuts, per task (#26: truncation is never silent)
    print("mtl_jax: " + truncation.line(truncation.counts(names, length, max_examples=evaluation.max_examples()),
                                          length), flush=True)

  writer = metric_writers.create_default_writer(str(model_dir / "train"), just_logging=not lead)
  eval_writer = metric_writers.create_default_writer(str(model_dir / "eval"), just_logging=not lead)
  shard = seqio.ShardInfo(index=jax.process_index(), num_shards=procs)
  batches = input_pipeline.train_batches(provider, task_feature_lengths, batch_size // procs,
                                         seed, start_batch=start, shard_info=shard, layout=layout)
  hooks = step_hooks.build(step_hooks.Context(model_dir, names, steps, lead, layout))

  def input_position(step):
    """Checkpoint meta: where the input stream is (one batch per step) and what it held."""
    return {"batches_consumed": step, "mixing_counts": monitor.counts.tolist()}

  def run_eval(step):
    record = evaluator.evaluate(lambda b: steps.run_predict(state.params, b))
    scalars = {f"{t}/{k}": v for t, r in record["tasks"].items() for k, v in r.items()}
    eval_writer.write_scalars(step, {**scalars, "average": record["average"]})
    ckpt.maybe_save_best(step, state, input_position(step), _score(record, best_metric), best_metric, best_mode)
    if step >= train_steps:  # the test split, on the checkpoint validation selected and on the last (run/held_out.py)
      record = held_out.finish(test_split, record, ckpt, steps, state, best_metric, best_mode)
    if lead:  # the final results.json only once its checkpoint is committed (run/finished.py)
      record = (ckpt.results_after_save if step >= train_steps else evaluation.write_results)(model_dir, step, record)
      weights = sharing_inspect.mixing_weights(state.params, steps, evaluator)
      if weights:
        evaluation.write_mixing_weights(model_dir, step, weights)
    return record

  # ---- 4. the loop ----
  record, skipped = None, 0
  bar = tqdm.tqdm(total=train_steps, initial=start, disable=not (progress and lead), unit="step",
                  dynamic_ncols=True)
  tick, tick_step = time.time(), start
  with _Preemption() as preempt:
    for step in range(start + 1, train_steps + 1):
      batch = next(batches)
      monitor.update(batch)
      if layout == "grouped":  # [T, b, ...] -> task-major [T*b, ...]: sorted task_id, static groups
        batch = input_pipeline.flatten_grouped(batch)
      state, metrics = steps.run_train_step(state, batch)
      bar.update(1)
      if not bool(metrics["finite"]):
        skipped += _nonfinite(metrics, names, step, on_nonfinite, ckpt, bar)
      hooks.after_step(step, state, batch)
      if step % log_period == 0 or step == train_steps:
        m = jax.device_get(metrics)
        rate = (step - tick_step) / max(time.time() - tick, 1e-9)
        tick, tick_step = time.time(), step
        scalars = {"loss": m["loss"], "penalty": m["penalty"], "grad_norm": m["grad_norm"],
                   "learning_rate": float(schedule(step - 1)), "steps_per_second": rate,
                   "skipped_nonfinite_updates": skipped}
        scalars.update({f"loss/{n}": m["task_loss"][t] for t, n in enumerate(names) if m["task_count"][t] > 0})
        scalars.update(monitor.scalars())
        writer.write_scalars(step, scalars)
        bar.set_postfix(loss=f"{float(m['loss']):.4f}")
      if step % eval_period == 0 or step == train_steps:
        record = run_eval(step)
        bar.write(f"step {step}: eval average={record['average']:.4f} " +
                  " ".join(f"{t}={r['headline']:.3f}" for t, r in record["tasks"].items()))
        if lead:  # this process's share of the stream (every process samples alike)
          bar.write(f"step {step}: {monitor.unit} seen (realised / intended share) " + " ".join(
              f"{t}={c} ({r:.3f}/{q:.3f})" for t, c, r, q in
              zip(monitor.task_names, monitor.counts, monitor.realised(), monitor.intended)))
      ckpt.save(step, state, input_position(step), force=step == train_steps)
      if preempt.requested():
        ckpt.save(step, state, input_position(step), force=True)
        ckpt.close()
        hooks.close(step, state)
        bar.close()
        print(f"mtl_jax: {preempt.signal_name} received: saved a checkpoint at step {step} in {model_dir}; "
              "run the same command again to resume", flush=True)
        return record or {}
  bar.close()
  if record is None:  # resumed at or past the end: evaluate the restored state
    record = run_eval(int(state.step))
    ckpt.save(int(state.step), state, input_position(int(state.step)), force=True)
  ckpt.close()
  hooks.close(int(state.step), state)
  writer.flush()
  eval_writer.flush()
  if lead:
    (model_dir / "operative_config.gin").write_text(gin.operative_config_str())
  return record
