"""`trainer.train.seeds=[0,1,2,3]`: K seeds of one run trained in one process, ONE jitted step for all.

Why: the seeds of a grid cell differ only in their seed, yet each paid its own process, data
build and compilation. Here each seed is a *lane*: `trainer.train` itself, run in a thread with
`seed=S` and its own MODEL_DIR, so everything a separate run does (input stream of seed S, resume
from its own checkpoints, eval, best checkpoint, held-out test, results.json, hooks) is exactly
the separate run's code. Only the train step is shared: each lane's `run_train_step` meets the
others' at a rendezvous, and the last to arrive runs step/seed_axis.py's vmapped step for all.
Lanes at different steps (one resumed from an older checkpoint) still step together (the step
and seed are per lane); a lane that finishes or fails leaves, and the rest go on without it.

MODEL_DIR of seed S: MODEL_DIR with '{seed}' replaced by S when it holds '{seed}' (mtl-compare
passes EXP_DIR/runs/<cell>__seed{seed}), else MODEL_DIR/seed<S>. Each lane's config.gin ends with
the bindings that make it the separate run's (seed, MODEL_DIR, no seeds).

Lanes that differ in more than their seed (`lanes.model_dirs` / `lanes.init_from`, one entry per entry of
train.seeds): lane i writes to model_dirs[i] and starts from the run init_from[i], so one process trains,
say, a transfer target from each of several sources (mtl-transfer --sources_per_step); a seed may then
repeat (the same data order, another starting point), a directory may not.

Checkpoints: orbax keeps process-wide state per save (operation ids, directory-creation signals),
so two lanes saving at once can write into each other's temporary directories; in a seeds run every
orbax save, restore and close holds one lock and a save waits until it is committed.

SIGTERM / SIGINT: Python delivers them to the main thread only, so during a seeds run the main
thread holds the handler and the lanes' preemption check (trainer._Preemption) reads the signal
as it stood at their last shared step: every lane saves at the same step and exits, and the same
command resumes them. Refused (one line, before anything is written): seeds that are not distinct
ints >= 0, train.seed set as well, several processes (multi-host).
"""

from __future__ import annotations

import collections
import contextlib
import pathlib
import signal
import sys
import threading

import gin
import jax

from mtl_jax.run import checkpoints
from mtl_jax.step import seed_axis

_LANE = threading.local()  # .lane = (driver, index) inside a lane's thread
_ORBAX = threading.RLock()  # one orbax operation at a time across lanes


@gin.configurable("lanes")
def lane_overrides(model_dirs=None, init_from=None) -> tuple:
  """gin: lanes.model_dirs / lanes.init_from, one entry per train.seeds entry (None: the seed templates)."""
  return model_dirs, init_from


def lane_init_from() -> str | None:
  """Inside a lane with its own starting run (lanes.init_from): that run's directory, else None."""
  lane = getattr(_LANE, "init_from", None)
  return None if lane is None else str(lane)


def _check_lanes(seeds, model_dirs, init_from) -> None:
  """lanes.* against train.seeds: one entry per lane, distinct directories; one line naming the bad value."""
  for name, values in (("model_dirs", model_dirs), ("init_from", init_from)):
    if values is not None and (not isinstance(values, (list, tuple)) or len(values) != len(seeds)):
      raise ValueError(f"lanes.{name}={values!r} must list one entry per train.seeds entry ({len(seeds)}: "
                       f"{list(seeds)})")
  if init_from is not None and model_dirs is None:
    raise ValueError("lanes.init_from is set without lanes.model_dirs; give each lane its own directory")
  if model_dirs is not None:
    dupes = sorted(d for d, n in collections.Counter(map(str, model_dirs)).items() if n > 1)
    if dupes:
      raise ValueError(f"lanes.model_dirs lists {dupes} more than once; give each lane its own directory")


def check(seeds, seed, lanes: bool = False) -> list[int]:
  """The seeds as a list, or one line naming the bad value (a seed may repeat only across lanes.model_dirs)."""
  if not isinstance(seeds, (list, tuple)) or not seeds or any(
      not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
    raise ValueError(f"train.seeds must be a non-empty list of ints >= 0, got {seeds!r}; "
                     "e.g. --gin.trainer.train.seeds=[0,1,2,3]")
  dupes = sorted({s for s in seeds if list(seeds).count(s) > 1})
  if dupes and not lanes:
    raise ValueError(f"train.seeds {list(seeds)} has duplicates ({', '.join(map(str, dupes))}); "
                     "list each seed once")
  if seed != 0:
    raise ValueError(f"train.seed={seed!r} and train.seeds={list(seeds)} are both set; "
                     "set one of them (train.seeds runs every listed seed)")
  if jax.process_count() > 1:
    raise ValueError(f"train.seeds={list(seeds)} runs in one process, but this run has {jax.process_count()} "
                     "processes; run each seed as its own multi-host run (train.seed)")
  return list(seeds)


def lane_dir(model_dir, seed: int) -> pathlib.Path:
  """Seed S's MODEL_DIR: the '{seed}' template filled in, else MODEL_DIR/seed<S>."""
  text = str(model_dir)
  return pathlib.Path(text.replace("{seed}", str(seed))) if "{seed}" in text else pathlib.Path(text) / f"seed{seed}"


def lane_steps(steps):
  """trainer.train's seam: inside a lane, its Steps stepping through the shared rendezvous."""
  lane = getattr(_LANE, "lane", None)
  return steps if lane is None else _LaneSteps(steps, *lane)


class _LaneSteps:
  """A lane's Steps: train steps go to the shared vmapped step; init and predict use the first
  lane's compiled programs (they do not depend on the seed but through the init key)."""

  def __init__(self, steps, driver: "_Driver", index: int):
    self._steps, self._driver, self._index = steps, driver, index
    self._shared = driver.template(steps)

  def __getattr__(self, name):
    return getattr(self._steps, name)

  def init_state(self):
    with jax.set_mesh(self._shared.mesh):
      return self._shared._init(jax.random.key(self._steps.seed))

  def run_predict(self, params, batch):
    return self._shared.run_predict(params, batch)

  def run_train_step(self, state, batch):
    return self._driver.step(self._index, state, batch)


class _Driver:
  """The rendezvous: lanes hand in (state, batch); the last one in runs the vmapped step for all."""

  def __init__(self, seeds):
    self.seeds = list(seeds)
    self.active = set(range(len(seeds)))
    self.waiting: dict[int, tuple] = {}
    self.results: dict[int, tuple] = {}
    self.cond = threading.Condition()
    self.signal_name = None      # set by the main thread's handler
    self.stop_signal = None      # the signal as it stood at the last shared step (what lanes act on)
    self._template = self._step = None

  def template(self, steps):
    with self.cond:
      if self._template is None:
        self._template, self._step = steps, seed_axis.SeedAxisStep(steps)
      return self._template

  def step(self, index: int, state, batch):
    with self.cond:
      self.waiting[index] = (state, batch)
      self._maybe_run()
      while index not in self.results:
        self.cond.wait()
      result = self.results.pop(index)
    if isinstance(result, BaseException):
      raise result
    return result

  def leave(self, index: int) -> None:
    with self.cond:
      self.active.discard(index)
      self._maybe_run()

  def _maybe_run(self) -> None:
    """With the lock held: once every active lane waits, one vmapped step for them all."""
    if not self.waiting or len(self.waiting) < len(self.active):
      return
    lanes = sorted(self.waiting)
    states, batches = zip(*(self.waiting[i] for i in lanes))
    self.waiting.clear()
    try:
      new, metrics = self._step(states, batches, [self.seeds[i] for i in lanes])
      self.results.update({i: (s, m) for i, s, m in zip(lanes, new, metrics)})
    except Exception as e:  # e.g. device OOM: every lane of this step raises it, as its own run would
      self.results.update({i: e for i in lanes})
    self.stop_signal = self.signal_name
    self.cond.notify_all()


class _LanePreemption:
  """trainer._Preemption inside a lane: the main thread's signal, as of the lane's last step."""

  def __init__(self):
    self._driver = _LANE.lane[0]

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    pass

  @property
  def signal_name(self):
    return self._driver.stop_signal

  def requested(self) -> bool:
    return self._driver.stop_signal is not None


class _Serial:
  """An orbax CheckpointManager whose saves (committed before returning), restores and close hold _ORBAX."""

  def __init__(self, manager):
    self._manager = manager

  def __getattr__(self, name):
    return getattr(self._manager, name)

  def save(self, *args, **kwargs):
    with _ORBAX:
      saved = self._manager.save(*args, **kwargs)
      self._manager.wait_until_finished()
      return saved

  def restore(self, *args, **kwargs):
    with _ORBAX:
      return self._manager.restore(*args, **kwargs)

  def close(self):
    with _ORBAX:
      self._manager.close()


class _LaneCheckpoints(checkpoints.Checkpoints):
  """checkpoints.Checkpoints inside a lane: its managers serialised across lanes (see the module docstring)."""

  def __init__(self, *args, **kwargs):
    with _ORBAX:
      super().__init__(*args, **kwargs)
    self.manager, self.best = _Serial(self.manager), _Serial(self.best)


@contextlib.contextmanager
def _lane_classes(trainer):
  """While the lanes run: trainer.train builds their preemption check and checkpoints (one process, K runs).
  `trainer` is the module of the train function we were handed (imported by it, not by us: no import circle)."""
  saved = trainer._Preemption, checkpoints.Checkpoints
  trainer._Preemption, checkpoints.Checkpoints = _LanePreemption, _LaneCheckpoints
  try:
    yield
  finally:
    trainer._Preemption, checkpoints.Checkpoints = saved


def _separate_run_bindings(model_dir: pathlib.Path, seed: int, seeds, source=None) -> str:
  own_start = ("" if source is None else f"init_from.model_dir = {str(source)!r}\n"
               "lanes.model_dirs = None\nlanes.init_from = None\n")
  return (f"\n# seeds in one step: this is seed {seed} of trainer.train.seeds={list(seeds)}; the lines below make\n"
          f"# this file the separate run's\nMODEL_DIR = {str(model_dir)!r}\ntrainer.train.model_dir = %MODEL_DIR\n"
          f"trainer.train.seed = {seed}\ntrainer.train.seeds = None\n{own_start}")


def train(train_fn, args: dict) -> dict:
  """Runs `train_fn(**args)` once per seed in args['seeds'] (lanes); returns {seed: results record}
  ({lane's MODEL_DIR: record} when lanes.model_dirs names the directories)."""
  model_dirs, sources = lane_overrides()
  seeds = check(args["seeds"], args["seed"], lanes=model_dirs is not None)
  _check_lanes(seeds, model_dirs, sources)
  dirs = ([pathlib.Path(d) for d in model_dirs] if model_dirs is not None
          else [lane_dir(args["model_dir"], s) for s in seeds])
  if len(set(dirs)) != len(dirs):
    raise ValueError(f"MODEL_DIR {args['model_dir']!r} gives seeds {seeds} one directory; "
                     "put '{seed}' in it or leave it out")
  sources = list(sources) if sources is not None else [None] * len(seeds)
  driver, records, errors = _Driver(seeds), {}, {}

  def lane(index: int, seed: int, model_dir: pathlib.Path):
    _LANE.lane, _LANE.init_from = (driver, index), sources[index]
    try:
      key = str(model_dir) if model_dirs is not None else seed
      records[key] = train_fn(**{**args, "model_dir": str(model_dir), "seed": seed, "seeds": None,
                                 "progress": bool(args.get("progress")) and index == 0})
    except BaseException as e:  # raised in the main thread once every lane is done
      errors[index] = e
    finally:
      driver.leave(index)
      config = model_dir / "config.gin"
      if config.exists() and "# seeds in one step" not in config.read_text():
        with open(config, "a") as f:
          f.write(_separate_run_bindings(model_dir, seed, seeds, sources[index]))

  def handle(signum, frame):
    del frame
    driver.signal_name = driver.signal_name or signal.Signals(signum).name

  threads = [threading.Thread(target=lane, args=(i, s, d), name=f"mtl_jax-seed{s}", daemon=True)
             for i, (s, d) in enumerate(zip(seeds, dirs))]
  main = threading.current_thread() is threading.main_thread()
  previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
  try:
    with _lane_classes(sys.modules[train_fn.__module__]):
      for t in threads:
        t.start()
      for t in threads:
        while t.is_alive():
          t.join(0.2)  # short waits: the main thread runs the signal handler in between
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  if errors:
    raise errors[min(errors)]
  return records
