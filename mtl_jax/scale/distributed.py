"""Multi-host start-up: `jax.distributed.initialize` from flags, env vars or the cluster.

Every process of a multi-host run executes the same command; `initialize` must run
before anything touches a JAX backend (train.main calls it first). Modes:

  off    (default) one process; nothing to initialize.
  on     explicit: coordinator address, process count and this process's id from
         --coordinator_address / --num_processes / --process_id, else from the env
         vars JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID.
         Multi-node GPU, or CPU processes (CPU collectives: gloo).
  auto   `jax.distributed.initialize()` with no arguments: JAX detects the cluster
         (Cloud TPU pod slices, SLURM, Open MPI, GKE/Kubernetes). Any flag given
         overrides the detected value.

Giving any of the three explicit flags without --distributed means 'on'.
After initialization each process feeds its own shard of the data
(seqio.ShardInfo(jax.process_index(), jax.process_count())), only process 0
writes summaries/results, and orbax writes checkpoints collectively.
"""

from __future__ import annotations

import dataclasses
import os

MODES = ("off", "on", "auto")
ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  mode: str = "off"
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  local_device_ids: tuple[int, ...] | None = None
  initialization_timeout: int = 300


def add_flags(parser) -> None:
  """Adds the multi-host flags to an argparse parser."""
  group = parser.add_argument_group("multi-host (jax.distributed)")
  group.add_argument("--distributed", choices=MODES, default=None,
                     help="off: one process (default). on: explicit coordinator/num_processes/process_id "
                          "(flags or JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID). "
                          "auto: let JAX detect the cluster (TPU pod slice, SLURM, Open MPI, GKE)")
  group.add_argument("--coordinator_address", default=None, help="host:port of process 0's coordinator")
  group.add_argument("--num_processes", type=int, default=None, help="total number of processes")
  group.add_argument("--process_id", type=int, default=None, help="this process's id in [0, num_processes)")
  group.add_argument("--local_device_ids", default=None,
                     help="comma-separated local accelerator ids this process uses (GPU: one process per GPU)")
  group.add_argument("--initialization_timeout", type=int, default=300,
                     help="seconds to wait for every process to join")


def config_from_args(args, environ=None) -> DistributedConfig:
  """The DistributedConfig the parsed flags (plus env vars in 'on' mode) describe."""
  environ = os.environ if environ is None else environ
  explicit = {k: getattr(args, k, None) for k in ENV}
  mode = getattr(args, "distributed", None)
  if mode is None:
    mode = "on" if any(v is not None for v in explicit.values()) else "off"
  if mode == "off":
    given = [f"--{k}" for k, v in explicit.items() if v is not None]
    if given:
      raise ValueError(f"{', '.join(given)} given with --distributed=off; use --distributed=on")
    return DistributedConfig()
  if mode == "on":
    for key, var in ENV.items():
      if explicit[key] is None and environ.get(var):
        raw = environ[var]
        try:
          explicit[key] = raw if key == "coordinator_address" else int(raw)
        except ValueError:
          raise ValueError(f"env var {var}={raw!r} is not an integer") from None
    missing = [f"--{k} (or {ENV[k]})" for k, v in explicit.items() if v is None]
    if missing:
      raise ValueError(f"--distributed=on needs {', '.join(missing)}; or use --distributed=auto on a "
                       "TPU pod slice / SLURM / Open MPI cluster")
  num, pid = explicit["num_processes"], explicit["process_id"]
  if num is not None and num < 1:
    raise ValueError(f"--num_processes must be >= 1, got {num}")
  if pid is not None and (pid < 0 or (num is not None and pid >= num)):
    raise ValueError(f"--process_id must be in [0, {num}), got {pid}")
  ids = getattr(args, "local_device_ids", None)
  ids = tuple(int(i) for i in str(ids).split(",") if i.strip()) if ids not in (None, "") else None
  return DistributedConfig(mode=mode, local_device_ids=ids,
                           initialization_timeout=int(getattr(args, "initialization_timeout", 300)),
                           **explicit)


def initialize(config: DistributedConfig) -> bool:
  """Calls jax.distributed.initialize as `config` says; True if it did.

  Must run before any JAX computation or device query in this process.
  """
  if config.mode == "off":
    return False
  import jax
  if config.mode not in MODES:
    raise ValueError(f"distributed mode must be one of {MODES}, got {config.mode!r}")
  try:  # CPU processes talk through gloo (already the default in recent JAX)
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except AttributeError:
    pass
  kwargs = {k: v for k, v in dataclasses.asdict(config).items()
            if k not in ("mode",) and v is not None}
  if "local_device_ids" in kwargs:
    kwargs["local_device_ids"] = list(kwargs["local_device_ids"])
  try:
    jax.distributed.initialize(**kwargs)
  except (ValueError, RuntimeError) as e:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if config.mode == "auto":
      raise RuntimeError(f"--distributed=auto could not join a cluster ({first}); on a TPU pod slice run the "
                         "same command on every host; elsewhere pass --coordinator_address, "
                         "--num_processes and --process_id") from e
    raise RuntimeError(f"jax.distributed.initialize(coordinator_address={config.coordinator_address!r}, "
                       f"num_processes={config.num_processes}, process_id={config.process_id}) failed: "
                       f"{first}") from e
  return True


def describe() -> str:
  """One line about this process's place in the run (call after initialize)."""
  import jax
  return (f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local of "
          f"{jax.device_count()} {jax.devices()[0].platform} devices")

