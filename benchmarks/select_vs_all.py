"""The closed loop's answer (#31 part 4): per arm (selected / all / random / none), the target's test
score averaged over targets, with a 95% bootstrap CI over targets and paired tests across targets.

Reads an mtl-transfer experiment directory written by gin/experiments/select_vs_all.gin (or any
`mtl-taskemb --select_k` experiment): its transfer_matrix.json cells and experiment.json. A target's
arms are its transfer.pairs in the order mtl_jax/taskemb/select.py writes them (selected, all, random),
plus the baseline 'none'. The unit of every test is the target (its mean over seeds): "does selection
help a new target" is a question over targets, and seeds only make each target's mean less noisy.

  python benchmarks/select_vs_all.py --exp_dir=/tmp/mtl_transfer/select_vs_all --out=benchmarks/results/select_vs_all
--versus=LABEL=EXP_DIR adds another select_vs_all experiment's selected arm on the same targets (e.g. a real
method's picks against the oracle's) as arm 'selected (LABEL)' and the paired comparison of the two selections.
Writes OUT/select_vs_all.md and OUT/select_vs_all.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections import defaultdict

import numpy as np

from mtl_jax.compare import stats
from mtl_jax.transfer.grid import NONE

ARMS = ("selected", "all", "random", NONE)
COMPARISONS = (("selected", NONE), ("all", NONE), ("random", NONE), ("selected", "all"), ("selected", "random"))


def arm_of_source(pairs: dict) -> dict:
  """{(target, source): arm} from transfer.pairs (selected, all, random per target)."""
  out = {}
  for target, sources in pairs.items():
    if len(sources) != 3:
      raise ValueError(f"target {target!r} has {len(sources)} stage-1 arms {sources}; a select_vs_all experiment "
                       "has 3 (selected, all, random)")
    for arm, source in zip(ARMS[:3], sources):
      out[(target, source)] = arm
  return out


def per_target_scores(cells: list[dict], arms: dict) -> dict:
  """{arm: {target: {seed: score}}} of the finished stage-2 cells; `arms` from arm_of_source."""
  out: dict = defaultdict(lambda: defaultdict(dict))
  for c in cells:
    arm = NONE if c["source"] == NONE else arms.get((c["target"], c["source"]))
    if arm is not None and c.get("score") is not None:
      out[arm][c["target"]][c["seed"]] = float(c["score"])
  return out


def stage1_wall(exp_dir: pathlib.Path, arms: dict) -> dict:
  """Mean stage-1 wall seconds per seed of each arm's mixtures (a launch of K seeds in one step / K)."""
  per_source = {}
  for run in (exp_dir / "runs").glob("source__*"):
    record = json.loads((run / "compare_run.json").read_text()) if (run / "compare_run.json").exists() else {}
    ok = [a for a in record.get("attempts", []) if a.get("returncode") == 0]
    if ok:
      k = len(ok[-1].get("seeds_in_one_step") or [0])
      per_source.setdefault(run.name.split("__")[1], []).append(ok[-1]["wall_s"] / k)
  walls = defaultdict(list)
  for (_, source), arm in arms.items():
    walls[arm] += per_source.get(source, [])
  return {arm: float(np.mean(v)) for arm, v in walls.items() if v}


def batch_size(exp_dir: pathlib.Path) -> int | None:
  """BATCH_SIZE as a stage-1 run's operative config recorded it."""
  for config in sorted((exp_dir / "runs").glob("source__*/operative_config.gin")):
    for line in config.read_text().splitlines():
      if line.startswith("BATCH_SIZE = "):
        return int(line.split("=")[1])
  return None


def summarize(scores: dict, targets: list[str], arms=ARMS, pairs=COMPARISONS) -> tuple[list[dict], list[dict]]:
  rows, means = [], {}
  for arm in arms:
    means[arm] = [np.mean(list(scores[arm][t].values())) if scores[arm].get(t) else None for t in targets]
    vals = [m for m in means[arm] if m is not None]
    seeds = sorted({len(scores[arm][t]) for t in targets if scores[arm].get(t)})
    rows.append({"arm": arm, "targets": len(vals), "seeds_per_target": seeds,
                 "mean": float(np.mean(vals)) if vals else None, "ci": stats.bootstrap_ci(vals)})
  comparisons = []
  for a, b in pairs:
    c = stats.paired_test(means[a], means[b])
    c.update(a=a, b=b)
    comparisons.append(c)
  stats.adjust(comparisons)
  return rows, comparisons


def markdown(rows, comparisons, walls, steps, batch) -> str:
  lines = ["| arm | targets | test score (mean over targets) | 95% CI (bootstrap over targets) | stage-1 wall s / seed |",
           "|---|---|---|---|---|"]
  for r in rows:
    wall = f"{walls[r['arm']]:.0f}" if r["arm"] in walls else "–"
    lines.append(f"| {r['arm']} | {r['targets']} | {r['mean']:.3f} | [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {wall} |")
  seen = f" ({steps * batch:,} examples seen)" if batch else ""
  lines += ["", f"Every stage-1 arm trains {steps} steps of batch {batch}{seen}; only the mixture differs.",
            "", "| comparison | diff (mean over targets) | 95% CI | p (paired t over targets) | p_adj (Holm) | |",
            "|---|---|---|---|---|---|"]
  for c in comparisons:
    lines.append(f"| {c['a']} vs {c['b']} | {c['diff']:+.3f} | [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] | "
                 f"{stats.fmt_p(c['p'])} | {stats.fmt_p(c['p_adj'])} | {stats.arrow(c)} |")
  return "\n".join(lines) + "\n"


def read_matrix(exp_dir: pathlib.Path) -> dict:
  matrix_path = exp_dir / "transfer_matrix.json"
  if not matrix_path.exists():
    raise SystemExit(f"select_vs_all: {matrix_path} not found; run mtl-transfer on the experiment first "
                     "(it writes transfer_matrix.json when stage 2 ends)")
  return json.loads(matrix_path.read_text())


def versus_arm(spec: str, targets: list[str]) -> tuple[str, dict]:
  """('selected (LABEL)', {target: {seed: score}}) of another experiment's selected arm on the same targets."""
  label, sep, other = spec.partition("=")
  if not sep or not label or not other:
    raise SystemExit(f"select_vs_all: --versus={spec!r}: use LABEL=EXP_DIR (e.g. oracle=/tmp/mtl_transfer/select_vs_all)")
  matrix = read_matrix(pathlib.Path(other))
  missing = sorted(set(targets) - set(matrix["experiment"]["targets"]))
  if missing:
    raise SystemExit(f"select_vs_all: --versus={spec!r} has no target(s) {missing}; compare experiments on the "
                     "same targets")
  scores = per_target_scores(matrix["cells"], arm_of_source(matrix["experiment"]["pairs"]))
  return f"selected ({label})", scores["selected"]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--exp_dir", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--versus", default=None, help="LABEL=EXP_DIR: another select_vs_all experiment's selected arm")
  args = p.parse_args(argv)
  exp_dir = pathlib.Path(args.exp_dir)
  matrix = read_matrix(exp_dir)
  exp = matrix["experiment"]
  arms = arm_of_source(exp["pairs"])
  scores = per_target_scores(matrix["cells"], arms)
  arm_names, pairs = ARMS, COMPARISONS
  if args.versus:
    name, other = versus_arm(args.versus, list(exp["targets"]))
    scores[name] = other
    arm_names, pairs = (*ARMS, name), (*COMPARISONS, ("selected", name))
  rows, comparisons = summarize(scores, list(exp["targets"]), arm_names, pairs)
  steps = int(exp["source_bindings"].get("TRAIN_STEPS", 0))
  batch = batch_size(exp_dir)
  walls = stage1_wall(exp_dir, arms)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  text = markdown(rows, comparisons, walls, steps, batch)
  (out / "select_vs_all.md").write_text(text)
  (out / "select_vs_all.json").write_text(json.dumps(
      {"rows": rows, "comparisons": comparisons, "stage1_wall_s_per_seed": walls, "unfinished": matrix["unfinished"],
       "per_target": {arm: {t: dict(s) for t, s in v.items()} for arm, v in scores.items()}}, indent=1, default=str))
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
