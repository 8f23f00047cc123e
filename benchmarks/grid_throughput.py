"""Grid throughput (issue #29 item 4): ratios measured side by side in one run.

  python benchmarks/grid_throughput.py                       # every part at its small default size
  python benchmarks/grid_throughput.py --parts startup,torch # some parts
  python benchmarks/grid_throughput.py --full                # the issue's sizes (longer windows, more steps)

Parts (each prints its own block; a part whose feature is not in the tree says 'not available yet'):
  startup  (c) start-up of a second identical cell, with and without the grid caches (run/grid_cache.py:
           the persistent XLA cache + the tokenized-examples cache): tiny quickstart cells through the
           train binary, wall and CPU seconds of the whole process; the cache is warmed by one untimed cell.
  torch    (d) MiniLM fine-tuning examples/s on the real quickstart texts (batch 32, length 64, WordPiece):
           mtl_jax's real train step on the pipeline's batches (padded; packed too when packing exists) vs
           HF transformers + PyTorch on the SAME examples with per-batch dynamic padding (each batch cut to
           its longest example), on the same mixed batches and regrouped one task per batch.
  packing  (a) real-token fraction and examples/s, packed vs padded rows, quickstart mixture, from scratch
           (gin/models/small.gin, the quickstart's model) and from MiniLM; the packing ceiling is padded
           examples/s / the padded real-token fraction.
  seeds    (b) K=4 seeds in one jitted step (trainer.train.seeds) vs 4 sequential runs of the tiny model,
           the same steps per seed, whole processes (both with a warm grid cache).
  sources  (e) a transfer target from 4 source runs x 3 seeds as 12 lanes of one trainer (mtl-transfer
           --sources_per_step: lanes.model_dirs / lanes.init_from) vs 4 launches of 3 seeds, tiny model.

In-process rows (torch, packing) run in this one process with the mtl-train binary's host settings
(run/host_runtime.py: glibc keeps freed memory, the import heap frozen out of gc), so PyTorch gets
them too; MTL_JAX_MALLOC=default runs both rows on glibc's defaults.

Timing: windows alternate between the rows being compared (the first row rotating), so a busy shared
machine loads them alike; compilation and warm-up are not timed. The load average is printed: ratios
side by side are the figures to read on a shared box, not the absolute numbers.
"""

from __future__ import annotations

import importlib.util  # noqa: F401  gin-config 0.5.0 resource_reader uses it without importing it
import argparse
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from mtl_jax.run import host_runtime  # noqa: E402  stdlib only: safe before jax / TF
PARTS = ("startup", "torch", "packing", "seeds", "sources")
CACHE_ENV = "MTL_JAX_GRID_CACHE"


def load_line() -> str:
  one, five, fifteen = os.getloadavg()
  return f"load average {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} CPUs (shared box)"


def cpu_line() -> str:
  """The CPU and its widest vector units: the same code ran ~3.5x slower on an AVX2-only host than on
  the earlier one, for both frameworks, and their ratio moved with it; absolute numbers from different
  hosts are not comparable."""
  try:
    info = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return "cpu unknown"
  lines = info.splitlines()
  model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
  flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
  vec = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
  return f"cpu {model} ({' '.join(vec) or 'no avx2'})"


# ------------------------------------------------------------------ processes (startup, seeds)

def clean_env(cache: pathlib.Path | None) -> dict:
  """The environment of a cell: no inherited JAX cache; the grid cache only when given."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")
         and not k.startswith("JAX_PERSISTENT_CACHE") and k != CACHE_ENV}
  if cache is not None:
    env[CACHE_ENV] = str(cache)
  return env


def timed_cell(argv, env) -> tuple[float, float]:
  """(wall, CPU seconds) of one train-binary process; raises with its last lines if it fails."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", "mtl_jax.train", "--no_progress", *argv], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=3600)
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if proc.returncode:
    raise RuntimeError(f"cell failed (rc {proc.returncode}): {' '.join(argv)}\n{proc.stderr[-1500:]}")
  return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def tiny_cell(model_dir, steps: int, extra=()) -> list[str]:
  return ["--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin", f"--gin.TRAIN_STEPS={steps}",
          "--gin.BATCH_SIZE=16", "--gin.trainer.train.eval_period=1000", f"--gin.MODEL_DIR={model_dir}", *extra]


def part_startup(args, tmp: pathlib.Path) -> None:
  print(f"\n== (c) start-up of a second identical cell, with vs without the grid caches ==\n{load_line()}")
  cache = tmp / "grid_cache"
  steps = 20 if args.full else 2
  wall, cpu = timed_cell(tiny_cell(tmp / "warm_up", steps), clean_env(cache))
  print(f"first cell (fills the cache, not compared): {wall:.1f} s wall, {cpu:.1f} CPU-s")
  rows = {"cached": [], "uncached": []}
  for r in range(args.repeats):
    order = ["cached", "uncached"] if r % 2 == 0 else ["uncached", "cached"]
    for name in order:
      env = clean_env(cache if name == "cached" else None)
      rows[name].append(timed_cell(tiny_cell(tmp / f"{name}{r}", steps), env))
  files = {d.name: sum(1 for _ in d.iterdir()) for d in cache.iterdir()}
  size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2 ** 20
  print(f"tiny quickstart cell: {steps} train steps, batch 16, length 64, eval of validation + test at the end; "
        f"cache held {files} ({size:.1f} MiB); {args.repeats} pair(s), min over pairs")
  print(f"{'second cell':<14} {'wall s':>8} {'CPU s':>8}")
  for name, vals in rows.items():
    print(f"{name:<14} {min(w for w, _ in vals):>8.1f} {min(c for _, c in vals):>8.1f}")
  w = min(w for w, _ in rows["uncached"]) / min(w for w, _ in rows["cached"])
  c = min(c for _, c in rows["uncached"]) / min(c for _, c in rows["cached"])
  print(f"uncached / cached: wall {w:.2f}x, CPU {c:.2f}x   (> 1: the cache saves that much per extra cell)")
  print(f"at end: {load_line()}")


def seeds_available() -> bool:
  import inspect
  from mtl_jax.run import trainer
  return "seeds" in inspect.signature(trainer.train).parameters


def part_seeds(args, tmp: pathlib.Path) -> None:
  print(f"\n== (b) K=4 seeds in one step vs 4 sequential runs (tiny model) ==\n{load_line()}")
  if not seeds_available():
    print("not available yet: trainer.train has no 'seeds' parameter in this tree")
    return
  steps = 200 if args.full else 30
  seeds = [0, 1, 2, 3]
  cache = tmp / "seeds_cache"
  env = clean_env(cache)
  timed_cell(tiny_cell(tmp / "seeds_warm", steps), env)  # both arms get a warm grid cache
  timed_cell(tiny_cell(tmp / "seeds_warm_k/{seed}", steps, [f"--gin.trainer.train.seeds={seeds}"]), env)
  one = timed_cell(tiny_cell(tmp / "k4/{seed}", steps, [f"--gin.trainer.train.seeds={seeds}"]), env)
  seq = [timed_cell(tiny_cell(tmp / f"seq{s}", steps, [f"--gin.trainer.train.seed={s}"]), env) for s in seeds]
  seq_wall, seq_cpu = sum(w for w, _ in seq), sum(c for _, c in seq)
  print(f"{steps} train steps per seed, batch 16, length 64, each seed evaluated at the end; warm grid cache")
  print(f"{'arm':<26} {'wall s':>8} {'CPU s':>8}")
  print(f"{'4 seeds in one step':<26} {one[0]:>8.1f} {one[1]:>8.1f}")
  print(f"{'4 sequential runs':<26} {seq_wall:>8.1f} {seq_cpu:>8.1f}")
  print(f"sequential / one step: wall {seq_wall / one[0]:.2f}x, CPU {seq_cpu / one[1]:.2f}x   (goal >= 2x)")
  print(f"at end: {load_line()}")


def part_sources(args, tmp: pathlib.Path) -> None:
  """(e) mtl-transfer --sources_per_step: a target from S sources x K seeds as lanes of one trainer."""
  print(f"\n== (e) a target from 4 sources x 3 seeds in one trainer vs 4 launches of 3 seeds (tiny model) ==\n"
        f"{load_line()}")
  steps, seeds, n_sources = (100 if args.full else 30), [0, 1, 2], 4
  env = clean_env(tmp / "sources_cache")
  sources = [tmp / f"source{i}" for i in range(n_sources)]  # 4 starting runs (the quickstart, 4 seeds)
  for i, source in enumerate(sources):
    timed_cell(tiny_cell(source, 3, [f"--gin.trainer.train.seed={i}"]), env)
  target = lambda d, extra: tiny_cell(d, steps, ["--gin.MIXTURE_OR_TASK_NAME='vader_tweets'", *extra])
  timed_cell(target(tmp / "warm/{seed}", [f"--gin.trainer.train.seeds={seeds}",
                                          f"--gin.init_from.model_dir={sources[0]}"]), env)  # both arms warm
  lanes = [(i, s) for i in range(n_sources) for s in seeds]
  one = timed_cell(target(tmp / "unused", [
      f"--gin.trainer.train.seeds={[s for _, s in lanes]}", f"--gin.init_from.model_dir={sources[0]}",
      f"--gin.lanes.model_dirs={[str(tmp / f'lanes_{i}_{s}') for i, s in lanes]}",
      f"--gin.lanes.init_from={[str(sources[i]) for i, _ in lanes]}"]), env)
  seq = [timed_cell(target(tmp / f"per_source{i}" / "{seed}", [f"--gin.trainer.train.seeds={seeds}",
                                                               f"--gin.init_from.model_dir={sources[i]}"]), env)
         for i in range(n_sources)]
  seq_wall, seq_cpu = sum(w for w, _ in seq), sum(c for _, c in seq)
  print(f"{steps} target steps per lane, batch 16, length 64, each lane evaluated at the end; warm grid cache")
  print(f"{'arm':<34} {'wall s':>8} {'CPU s':>8}")
  print(f"{'12 lanes (4 sources x 3 seeds)':<34} {one[0]:>8.1f} {one[1]:>8.1f}")
  print(f"{'4 launches of 3 seeds':<34} {seq_wall:>8.1f} {seq_cpu:>8.1f}")
  print(f"4 launches / one: wall {seq_wall / one[0]:.2f}x, CPU {seq_cpu / one[1]:.2f}x")
  print(f"at end: {load_line()}")


# ------------------------------------------------------------------ in-process cells (packing, torch)

def packing_available() -> bool:
  return (REPO / "gin/mixing/packed.gin").is_file() and importlib.util.find_spec("mtl_jax.input.packing") is not None


class Cell:
  """The trainer's own model, optimizer, train step and input pipeline for one gin configuration (the
  quickstart mixture, hard sharing), with `n` batches read up front; nothing written."""

  def __init__(self, gin_files, bindings, length: int, batch_size: int, n: int, seed: int = 0):
    import gin
    import jax
    from mtl_jax.input import input_pipeline, task_info
    from mtl_jax.models.multitask import build_model
    from mtl_jax.run import starting_point
    from mtl_jax.scale import partitioning
    from mtl_jax.step import optim, steps as steps_lib
    from mtl_jax.train import parse_gin
    import tasks.offline  # noqa: F401  registers the quickstart mixture (as gin/runs/quickstart.gin does)

    parse_gin(["gin/base.gin", *gin_files], ["MODEL_DIR='/nonexistent'", "MIXTURE_OR_TASK_NAME='quickstart'",
                                             f"TASK_FEATURE_LENGTHS={{'inputs': {length}}}", "TRAIN_STEPS=1000",
                                             *bindings])
    self.gin_text = gin.config_str()
    provider = input_pipeline.get_provider("quickstart")
    names = input_pipeline.task_names(provider)
    infos = task_info.get_all(names)
    self.kinds, self.num_classes = [i.kind for i in infos], [i.num_classes for i in infos]
    start = starting_point.for_run()
    config = start.encoder_config(provider.output_features["inputs"].vocabulary.vocab_size)
    model = build_model(config, "hard", self.num_classes)
    tx, _ = optim.make_optimizer(1000)
    mesh = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
    self.steps = steps_lib.Steps(model, tx, self.kinds, mesh, partitioning.logical_axis_rules(), seed,
                                 batch_size, length)
    self.state = start.init_state(self.steps)
    it = input_pipeline.train_batches(provider, {"inputs": length}, batch_size, seed)
    self.batches = [next(it) for _ in range(n)]
    self.config = config
    self.vocabulary = provider.output_features["inputs"].vocabulary
    self.i = 0
    self.run(1)  # compile + one warm-up step, not timed

  @staticmethod
  def examples(batch) -> int:
    """Examples in a batch: packed rows count their segments, padded rows count 1 (weight 0: none)."""
    import numpy as np
    if "segment_weight" in batch:
      return int((np.asarray(batch["segment_weight"]) > 0).sum())
    return int((np.asarray(batch["weight"]) > 0).sum())

  def run(self, n: int) -> int:
    import jax
    done = 0
    for _ in range(n):
      batch = self.batches[self.i % len(self.batches)]
      self.i += 1
      self.state, metrics = self.steps.run_train_step(self.state, batch)
      done += self.examples(batch)
    jax.block_until_ready(metrics["loss"])
    return done

  def tokens_per_example(self) -> float:
    import numpy as np
    real = sum(int((np.asarray(b["input_mask"]) > 0).sum()) for b in self.batches)
    return real / max(sum(self.examples(b) for b in self.batches), 1)

  def real_fraction(self) -> float:
    import numpy as np
    real = sum(int((np.asarray(b["input_mask"]) > 0).sum()) for b in self.batches)
    return real / sum(int(np.asarray(b["input_mask"]).size) for b in self.batches)


def alternate(rows: dict, windows: int, steps: int) -> dict:
  """{name: [examples/s of each window]}: windows of `steps` steps, the rows alternating, first rotating."""
  names = list(rows)
  out = {k: [] for k in names}
  for w in range(windows):
    for name in names[w % len(names):] + names[:w % len(names)]:
      t = time.perf_counter()
      n = rows[name].run(steps)
      out[name].append(n / (time.perf_counter() - t))
  return out


class TorchRow:
  """HF transformers (AutoModel, add_pooling_layer=False) + one Linear head per task, mean pooling,
  AdamW; each batch cut to its longest example (dynamic padding), the same examples as our rows."""

  def __init__(self, path, kinds, num_classes, batches, lr: float = 1e-4, seed: int = 0):
    import torch
    import transformers
    torch.manual_seed(seed)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    self.torch = torch
    self.encoder = transformers.AutoModel.from_pretrained(str(path), add_pooling_layer=False, dtype=torch.float32)
    d = self.encoder.config.hidden_size
    self.heads = torch.nn.ModuleList([torch.nn.Linear(d, max(c, 1)) for c in num_classes])
    self.kinds = kinds
    params = list(self.encoder.parameters()) + list(self.heads.parameters())
    self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    self.batches = [self._tensors(b) for b in batches]
    self.i = 0

  def _tensors(self, batch):
    import numpy as np
    mask = np.asarray(batch["input_mask"])
    keep = np.asarray(batch["weight"]) > 0
    longest = int(mask[keep].sum(1).max())
    t = self.torch
    return {"ids": t.as_tensor(batch["input_ids"][keep, :longest], dtype=t.long),
            "mask": t.as_tensor(mask[keep, :longest], dtype=t.long),
            "task": np.asarray(batch["task_id"])[keep], "label": t.as_tensor(batch["label"][keep], dtype=t.long),
            "score": t.as_tensor(batch["score"][keep], dtype=t.float32), "n": int(keep.sum()),
            "slots": int(keep.sum()) * longest, "real": int(mask[keep].sum())}

  def run(self, n: int) -> int:
    F, t = self.torch.nn.functional, self.torch
    self.encoder.train()
    done = 0
    for _ in range(n):
      b = self.batches[self.i % len(self.batches)]
      self.i += 1
      self.opt.zero_grad(set_to_none=True)
      h = self.encoder(input_ids=b["ids"], attention_mask=b["mask"]).last_hidden_state
      m = b["mask"][..., None].float()
      pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
      loss = 0.0
      for task in sorted(set(b["task"].tolist())):
        rows = t.as_tensor(b["task"] == task)
        out = self.heads[task](pooled[rows])
        if self.kinds[task] == "regression":
          loss = loss + F.mse_loss(out[:, 0], b["score"][rows], reduction="sum")
        else:
          loss = loss + F.cross_entropy(out, b["label"][rows], reduction="sum")
      (loss / b["n"]).backward()
      self.opt.step()
      done += b["n"]
    return done


def one_task_batches(batches, batch_size: int):
  """The same examples regrouped one task per batch (what MT-DNN / jiant sample), full batches only."""
  import numpy as np
  rows = {}
  for b in batches:
    keep = np.asarray(b["weight"]) > 0
    for j in np.nonzero(keep)[0]:
      rows.setdefault(int(b["task_id"][j]), []).append({k: np.asarray(v)[j] for k, v in b.items()})
  out = []
  for task, items in sorted(rows.items()):
    for s in range(0, len(items) - batch_size + 1, batch_size):
      chunk = items[s:s + batch_size]
      out.append({k: np.stack([r[k] for r in chunk]) for k in chunk[0]})
  return out


def summarise(eps: dict, pairs) -> None:
  med = {k: statistics.median(v) for k, v in eps.items()}
  best = {k: max(v) for k, v in eps.items()}
  print(f"{'row':<28} {'examples/s (median)':>20} {'fastest window':>15}")
  for k in eps:
    print(f"{k:<28} {med[k]:>20.1f} {best[k]:>15.1f}")
  print(f"{'ratio':<44} {'median':>7} {'fastest':>8}")
  for a, b, note in pairs:
    if a in med and b in med:
      print(f"{a + ' / ' + b:<44} {med[a] / med[b]:>7.2f} {best[a] / best[b]:>8.2f}   {note}")


def part_torch(args, tmp: pathlib.Path) -> None:
  del tmp
  print(f"\n== (d) MiniLM fine-tuning on the quickstart texts: mtl_jax vs HF + PyTorch (dynamic padding) ==\n"
        f"{load_line()}")
  try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
  except ImportError:
    print("not available: torch / transformers missing (pip install -e '.[bench]')")
    return
  from mtl_jax.pretrained import settings, store
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  b, length, n = 32, 64, (24 if args.full else 8)
  minilm = ["gin/sharing/hard.gin", "gin/pretrained/minilm.gin"]
  rows = {"mtl_jax padded": Cell(minilm, [f"BATCH_SIZE={b}"], length, b, n)}
  path = store.resolve(settings.current().checkpoint)
  padded = rows["mtl_jax padded"]
  real = padded.real_fraction()
  mixed = TorchRow(path, padded.kinds, padded.num_classes, padded.batches)
  grouped_batches = one_task_batches(padded.batches, b)
  grouped = TorchRow(path, padded.kinds, padded.num_classes, grouped_batches)
  fill = lambda r: sum(x["real"] for x in r.batches) / sum(x["slots"] for x in r.batches)
  if packing_available():
    try:
      rows["mtl_jax packed"] = Cell([*minilm, "gin/mixing/packed.gin"], [f"BATCH_SIZE={b}"], length, b, n)
    except Exception as e:  # pylint: disable=broad-except  (packing still being built)
      print(f"mtl_jax packed: not available yet ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
  else:
    print("mtl_jax packed: not available yet (no gin/mixing/packed.gin / mtl_jax.input.packing)")
  rows["torch mixed"], rows["torch one task per batch"] = mixed, grouped
  mixed.run(1)
  grouped.run(1)  # warm-up
  print(f"batch {b}, length {length}, {n} pipeline batches ({sum(Cell.examples(x) for x in padded.batches)} "
        f"examples; {len(grouped_batches)} one-task batches of them); real-token fraction: padded to {length} "
        f"{real:.3f}, torch mixed {fill(mixed):.3f}, torch one task per batch {fill(grouped):.3f}"
        + (f", packed {rows['mtl_jax packed'].real_fraction():.3f}" if "mtl_jax packed" in rows else ""))
  print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}")
  host_runtime.freeze_imports()  # every row built: collections skip what the imports made (both frameworks)
  eps = alternate(rows, windows=(12 if args.full else 4), steps=(2 if args.full else 1))
  summarise(eps, [("mtl_jax padded", "torch mixed", "goal >= 1.3 with packing"),
                  ("mtl_jax padded", "torch one task per batch", "goal >= 1.1 with packing"),
                  ("mtl_jax packed", "torch mixed", "goal >= 1.3"),
                  ("mtl_jax packed", "torch one task per batch", "goal >= 1.1")])
  print(f"at end: {load_line()}")


def part_packing(args, tmp: pathlib.Path) -> None:
  del tmp
  print(f"\n== (a) packed vs padded rows, quickstart mixture (real-token fraction, examples/s) ==\n{load_line()}")
  if not packing_available():
    print("not available yet: no gin/mixing/packed.gin / mtl_jax.input.packing in this tree")
    return
  n = 24 if args.full else 6
  starts = {"from scratch (small.gin, the quickstart's model)": ["gin/models/small.gin", "gin/sharing/hard.gin"],
            "from MiniLM": ["gin/sharing/hard.gin", "gin/pretrained/minilm.gin"]}
  if args.tiny_packing:  # per-step overhead, not tokens, dominates a d=32 model: not what the goal is about
    starts = {"from scratch (tiny.gin)": ["gin/models/tiny.gin", "gin/sharing/hard.gin"]}
  for label, files in starts.items():
    try:
      rows = {"padded": Cell(files, ["BATCH_SIZE=32"], 64, 32, n),
              "packed": Cell([*files, "gin/mixing/packed.gin"], ["BATCH_SIZE=32"], 64, 32, n)}
    except Exception as e:  # pylint: disable=broad-except  (packing still being built)
      print(f"{label}: not available yet ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
      continue
    frac = {k: r.real_fraction() for k, r in rows.items()}
    eps = alternate(rows, windows=(12 if args.full else 4), steps=1)
    med = {k: statistics.median(v) for k, v in eps.items()}
    ceiling = med["padded"] / frac["padded"]
    print(f"{label}: real-token fraction padded {frac['padded']:.3f}, packed {frac['packed']:.3f}; examples/s "
          f"padded {med['padded']:.1f}, packed {med['packed']:.1f} ({med['packed'] / med['padded']:.2f}x); "
          f"packing ceiling {ceiling:.1f} ({1 / frac['padded']:.2f}x): packed reaches "
          f"{med['packed'] / ceiling:.0%} of it (goal >= 90%)")
    # Rates apply to packed ROWS, so packed batches hold more short-text examples than padded ones: real
    # tokens/s compares the same work whatever the example mix (ceiling: every padded slot real).
    tok = {k: med[k] * r.tokens_per_example() for k, r in rows.items()}
    print(f"{label}: real tokens/s padded {tok['padded']:.0f}, packed {tok['packed']:.0f} "
          f"({tok['packed'] / tok['padded']:.2f}x); ceiling {tok['padded'] / frac['padded']:.0f}: packed reaches "
          f"{tok['packed'] * frac['padded'] / tok['padded']:.0%} of it")
  print(f"at end: {load_line()}")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
  p.add_argument("--full", action="store_true", help="the issue's sizes: more steps and windows")
  p.add_argument("--repeats", type=int, default=1, help="(c): pairs of second cells, cached / uncached")
  p.add_argument("--tiny_packing", action="store_true", help="(a): the tiny model from scratch only (quick check)")
  p.add_argument("--torch_threads", type=int, default=None, help="(d): torch.set_num_threads (default: torch's)")
  args = p.parse_args(argv)
  parts = [x.strip() for x in args.parts.split(",") if x.strip()]
  unknown = [x for x in parts if x not in PARTS]
  if unknown:
    p.error(f"unknown part(s) {unknown}; choose from {PARTS}")
  import jax
  tuned = host_runtime.tune_allocator()  # as the mtl-train binary: for every in-process row, PyTorch's too
  print(f"grid_throughput: parts {parts}{' (full sizes)' if args.full else ''}; jax {jax.__version__} on "
        f"{jax.devices()[0].platform}; {cpu_line()}; glibc malloc {'tuned' if tuned else 'default'}; "
        f"{load_line()}", flush=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="grid_throughput_"))
  try:
    for part in parts:
      {"startup": part_startup, "torch": part_torch, "packing": part_packing, "seeds": part_seeds,
       "sources": part_sources}[part](args, tmp)
      sys.stdout.flush()
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
