"""The closed loop (Padmakumar et al. 2022): the top-K sources of a ranking become a pre-finetuning
mixture, and an mtl-transfer experiment compares it with all candidates, a random subset of the same
size, and no pre-finetuning, on the target.

`mtl-taskemb --select_k K --target T` writes OUT_DIR/select_vs_all__<T>__k<K>.gin:
  sources  taskemb_group.<selected>   the K best candidates of the chosen method (a mixture)
           taskemb_group.<all>        every candidate
           taskemb_group.<random K>   K candidates drawn with a fixed seed (not the selected set if avoidable)
  target   T, with the transfer baseline 'none' (no stage 1) and the limited-data regime given
The mixtures are registered from the env variable of groups.py (mtl_jax.taskemb.group_mixtures, rates
proportional to size capped at 3000): the experiment sets it for every cell. Cost per arm (examples
seen, wall time) is what mtl-transfer's cells record (results.json / run timing).
"""

from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

import numpy as np

from mtl_jax.taskemb import groups, ranking


def top_k(predicted: Mapping[str, float], k: int, target: str) -> list[str]:
  """The k best candidates (ranking order); one line when k does not fit."""
  if not isinstance(k, int) or isinstance(k, bool) or k < 1:
    raise ValueError(f"--select_k={k!r}: use an int >= 1")
  if len(predicted) < 2:
    raise ValueError(f"target {target!r} has {len(predicted)} candidate source(s): selection needs >= 2")
  if k > len(predicted):
    raise ValueError(f"--select_k={k} is larger than the {len(predicted)} candidate sources of target {target!r}; "
                     f"use --select_k <= {len(predicted)}")
  return ranking.ranking(predicted)[:k]


def random_subset(candidates: Sequence[str], k: int, seed: int, avoid: Sequence[str] = ()) -> list[str]:
  """k candidates drawn with `seed`; another draw (up to 100) when it equals `avoid` and others exist."""
  rng = np.random.default_rng(seed)
  pool = sorted(candidates)
  for _ in range(100):
    pick = sorted(rng.choice(pool, size=k, replace=False).tolist())
    if sorted(avoid) != pick or k == len(pool):
      return pick
  return pick


def experiment_gin(path: pathlib.Path, arms_of: Mapping[str, Mapping[str, Sequence[str]]], method: str,
                   gin_files: Sequence[str], regimes: Mapping, seeds: Sequence[int], bindings: Mapping,
                   source_bindings: Mapping, target_bindings: Mapping, name: str | None = None) -> pathlib.Path:
  """An mtl-transfer experiment: per target (transfer.pairs), its selected / all / random arms vs none.

  arms_of[target] = {'selected': [...], 'all': [...], 'random': [...]}; equal arms share one stage-1 mixture."""
  mixture = lambda ts: groups.group_name(ts) if len(ts) > 1 else ts[0]
  pairs = {t: list(dict.fromkeys(mixture(sorted(arms[a])) for a in ("selected", "all", "random")))
           for t, arms in arms_of.items()}
  sources = list(dict.fromkeys(m for ms in pairs.values() for m in ms))
  env = groups.env_value(sorted({tuple(sorted(ts)) for arms in arms_of.values() for ts in arms.values()}))
  k = {len(arms["selected"]) for arms in arms_of.values()}
  name = name or f"select_vs_all__{'_'.join(arms_of) if len(arms_of) == 1 else f'{len(arms_of)}_targets'}__k{max(k)}"
  lines = [f"# Closed loop: pre-finetune each target on the top-{max(k)} sources by {method} vs all candidates vs a",
           "# random subset of the same size vs none (the transfer baseline); mean and CI over seeds in report.md,",
           "# cost (examples seen, wall time) in each cell's results.json.",
           f"#   python -m mtl_jax.transfer --experiment={path}"]
  for t, arms in arms_of.items():
    lines += [f"#   {t}: " + "; ".join(f"{a} {', '.join(sorted(ts))}" for a, ts in arms.items() if a != "all")]
  lines += ["from mtl_jax.transfer import grid", "",
            f"transfer.name = {name!r}",
            f"transfer.description = {('top-' + str(max(k)) + ' by ' + method + ' vs all vs random vs none')!r}",
            f"transfer.gin_files = {[*gin_files, groups.GIN]!r}",
            f"transfer.sources = {sources!r}",
            f"transfer.targets = {list(arms_of)!r}",
            f"transfer.pairs = {pairs!r}",
            f"transfer.regimes = {dict(regimes)!r}",
            f"transfer.seeds = {list(seeds)!r}",
            f"transfer.bindings = {dict(bindings)!r}",
            f"transfer.source_bindings = {dict(source_bindings)!r}",
            f"transfer.target_bindings = {dict(target_bindings)!r}",
            f"transfer.env = {{{groups.ENV!r}: {env!r}}}",
            f"transfer.exp_dir = {('/tmp/mtl_transfer/' + name)!r}", ""]
  return groups.write_experiment(path, lines)


def _steps(n: int) -> dict:
  return {"TRAIN_STEPS": n, "trainer.train.eval_period": n, "trainer.train.checkpoint_period": n}


def write(args, tasks, truth, methods, files, out_dir, echo=print) -> dict:
  """Writes the closed-loop experiment of the --target(s); {target: selected sources, 'path': gin file}."""
  method = args.select_method or ("taskemb" if "taskemb" in methods else next(iter(methods)))
  if method not in methods:
    raise ValueError(f"--select_method={method!r} was not computed; computed: {sorted(methods)}")
  arms_of, out = {}, {}
  for i, target in enumerate(args.target):
    candidates = ([c for c in args.candidates if c != target] if args.candidates else
                  list(truth[target]) if target in truth else [t for t in tasks if t != target])
    unknown = [c for c in candidates if c not in tasks]
    if unknown:
      raise ValueError(f"--candidates {unknown} are not among --tasks; add them")
    per_seed = [pred({target: candidates})[target] for _, pred in methods[method]]
    predicted = {s: float(np.mean([p[s] for p in per_seed])) for s in candidates}
    chosen = top_k(predicted, args.select_k, target)
    arms_of[target] = {"selected": chosen, "all": candidates,
                       "random": random_subset(candidates, args.select_k, seed=i, avoid=chosen)}
    out[target] = chosen
    echo(f"mtl-taskemb: top-{args.select_k} sources of {target} by {method}: {', '.join(chosen)}")
  regimes = {f"n{args.target_regime}": args.target_regime} if args.target_regime else {"full": None}
  name = "_".join(args.target) if len(args.target) == 1 else f"{len(args.target)}_targets"
  out["path"] = str(experiment_gin(out_dir / f"select_vs_all__{name}__k{args.select_k}.gin", arms_of, method,
                                          files, regimes, args.select_seeds, {}, _steps(300), _steps(60)))
  echo(f"mtl-taskemb: wrote {out['path']}")
  return out
