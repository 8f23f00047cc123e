"""train(): the loop — build data, model, sharded state; resume; step; log; eval; checkpoint.

Everything here is configured by gin (see gin/runs/quickstart.gin). The loop
itself is plain Python around the pure jitted steps in steps.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time

import gin
import jax
import numpy as np
import seqio
import tqdm
from clu import metric_writers

from mtl_jax import checkpoints, evaluation, features, input_pipeline, optim, partitioning, steps as steps_lib
from mtl_jax import task_info
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.models.multitask import build_model

log = logging.getLogger("mtl_jax")


def _positive_int(name: str, value) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value!r}; set --gin.{name}=<int>")
  return value


def param_counts(params) -> dict[str, int]:
  """Parameter count per top-level module (embedder / trunk / heads) and in total."""
  counts = {k: int(sum(np.prod(x.shape) for x in jax.tree.leaves(v))) for k, v in params.items()}
  counts["total"] = sum(counts.values())
  return counts


@gin.configurable(denylist=["progress"])
def train(
    model_dir: str = gin.REQUIRED,
    mixture_or_task_name: str = gin.REQUIRED,
    task_feature_lengths: dict = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    sharing: str = "hard",
    seed: int = 0,
    eval_period: int = 100,
    checkpoint_period: int = 100,
    keep_checkpoints: int = 3,
    log_period: int = 10,
    eval_batch_size: int | None = None,
    progress: bool = True,
) -> dict:
  """Trains (or resumes) and returns the final evaluation record (also in results.json)."""
  train_steps = _positive_int("TRAIN_STEPS", train_steps)
  batch_size = _positive_int("BATCH_SIZE", batch_size)
  length = features.check_feature_lengths(task_feature_lengths)
  for name in ("eval_period", "checkpoint_period", "log_period"):
    _positive_int(f"train.{name}", locals()[name])
  provider = input_pipeline.get_provider(mixture_or_task_name)
  names = input_pipeline.task_names(provider)
  infos = task_info.get_all(names)
  vocab = provider.output_features["inputs"].vocabulary
  config = dataclasses.replace(EncoderConfig(), vocab_size=vocab.vocab_size)
  if config.max_len < length:
    raise ValueError(f"TASK_FEATURE_LENGTHS['inputs']={length} exceeds EncoderConfig.max_len={config.max_len}; "
                     "raise EncoderConfig.max_len or shorten the inputs")
  mesh = partitioning.make_mesh()
  rules = partitioning.logical_axis_rules()
  data_size = mesh.shape["data"]
  if batch_size % data_size or batch_size % jax.process_count():
    raise ValueError(f"BATCH_SIZE={batch_size} is not divisible by the mesh's data axis ({data_size}) "
                     f"and process count ({jax.process_count()}); use a multiple of {data_size * jax.process_count()}")
  model = build_model(config, sharing, [i.num_classes for i in infos])
  tx, schedule = optim.make_optimizer(train_steps)

  model_dir = pathlib.Path(model_dir)
  model_dir.mkdir(parents=True, exist_ok=True)
  lead = jax.process_index() == 0
  if lead:
    (model_dir / "config.gin").write_text(gin.config_str())

  steps = steps_lib.Steps(model, tx, [i.kind for i in infos], mesh, rules, seed, batch_size, length)
  ckpt = checkpoints.Checkpoints(model_dir, keep=keep_checkpoints, period=checkpoint_period)
  latest = ckpt.latest_step()
  if latest is not None:
    state, meta = ckpt.restore(latest, steps.abstract_state)
    start = int(meta["batches_consumed"])
    log.info("resumed from %s at step %d", model_dir / "checkpoints", latest)
    print(f"mtl_jax: resuming from checkpoint at step {latest} in {model_dir}", flush=True)
  else:
    state, start = steps.init_state(), 0
  counts = param_counts(state.params)
  print(f"mtl_jax: sharing={sharing} tasks={len(names)} parameters " +
        " ".join(f"{k}={v:,}" for k, v in counts.items()), flush=True)

  writer = metric_writers.create_default_writer(str(model_dir / "train"), just_logging=not lead)
  eval_writer = metric_writers.create_default_writer(str(model_dir / "eval"), just_logging=not lead)
  evaluator = evaluation.Evaluator(names, task_feature_lengths, eval_batch_size or batch_size)
  shard = seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())
  batches = input_pipeline.train_batches(provider, task_feature_lengths, batch_size // jax.process_count(),
                                         seed, start_batch=start, shard_info=shard)

  def run_eval(step):
    record = evaluator.evaluate(lambda b: steps.run_predict(state.params, b))
    scalars = {f"{t}/{k}": v for t, r in record["tasks"].items() for k, v in r.items()}
    eval_writer.write_scalars(step, {**scalars, "average": record["average"]})
    return evaluation.write_results(model_dir, step, record) if lead else record

  record = None
  bar = tqdm.tqdm(total=train_steps, initial=start, disable=not (progress and lead), unit="step",
                  dynamic_ncols=True)
  tick, tick_step = time.time(), start
  for step in range(start + 1, train_steps + 1):
    state, metrics = steps.run_train_step(state, next(batches))
    bar.update(1)
    if step % log_period == 0 or step == train_steps:
      m = jax.device_get(metrics)
      rate = (step - tick_step) / max(time.time() - tick, 1e-9)
      tick, tick_step = time.time(), step
      scalars = {"loss": m["loss"], "penalty": m["penalty"], "grad_norm": m["grad_norm"],
                 "learning_rate": float(schedule(step - 1)), "steps_per_second": rate}
      scalars.update({f"loss/{n}": m["task_loss"][t] for t, n in enumerate(names) if m["task_count"][t] > 0})
      writer.write_scalars(step, scalars)
      bar.set_postfix(loss=f"{float(m['loss']):.4f}")
    if step % eval_period == 0 or step == train_steps:
      record = run_eval(step)
      bar.write(f"step {step}: eval average={record['average']:.4f} " +
                " ".join(f"{t}={r['headline']:.3f}" for t, r in record["tasks"].items()))
    ckpt.save(step, state, {"batches_consumed": step}, force=step == train_steps)
  bar.close()
  if record is None:  # resumed at or past the end: evaluate the restored state
    record = run_eval(int(state.step))
    ckpt.save(int(state.step), state, {"batches_consumed": int(state.step)}, force=True)
  ckpt.close()
  writer.flush()
  eval_writer.flush()
  if lead:
    (model_dir / "operative_config.gin").write_text(gin.operative_config_str())
  return record
