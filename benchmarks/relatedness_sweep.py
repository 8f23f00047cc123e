"""The flagship comparison, one command: the synthetic relatedness sweep.

  python benchmarks/relatedness_sweep.py [--exp_dir=/tmp/mtl_compare/relatedness_sweep] [mtl-compare flags]

= `python -m mtl_jax.compare --experiment=gin/experiments/relatedness_sweep.gin`, plus the
wall/CPU time of the whole sweep and the delta-m vs relatedness table printed at the end.
Grid: r in {0, .25, .5, .75, 1} (synthetic_r*_t2) x {single-task, hard, soft, sluice,
cross_stitch} x seeds 0-5: 5 x 4 x 6 = 120 multi-task runs + 5 x 2 x 6 = 60 single-task runs of
the tiny encoder (d=32, 2 layers) for 400 steps of batch 32 (gin/experiments/base/synthetic.gin);
a cell's 6 seeds train as one vmapped step (experiment.seeds_per_step = 6): 30 launches, 2 at a
time (experiment.parallel = 2). At the end: the delta-m table and, per strategy, delta-m at r=1 vs
r=0 (Welch t-test, Holm), written to EXP_DIR/relatedness_ends.md.

Time, measured in full on 2 idle cores (6 Dec 2026): 11.2 min wall, 21.1 CPU-min inside the cells for
180 runs = 3.72 s wall and 7.08 CPU-s per run; the 3-seed, one-process-per-run sweep of Nov 2026 on the same
box, right after: 17.6 min for 90 runs, 11.74 s and 21.4 CPU-s per run (3.16x wall per run;
benchmarks/README.md "Grid throughput"). Rerunning the command skips finished cells.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtl_jax.compare import cli, stats  # noqa: E402

EXPERIMENT = "gin/experiments/relatedness_sweep.gin"


def ends_table(groups, low: str = "synthetic_r0_t2", high: str = "synthetic_r100_t2") -> str:
  """Does sharing help more when the tasks are identical? Per strategy, Δm at r=1 vs at r=0: Welch's
  t-test (a seed's cells on two mixtures are not pairs), Holm over the strategies."""
  dm = {(g["strategy"], g["mixture"]): g["delta_m"].get("values", []) for g in groups
        if g["mixture"] in (low, high) and g["strategy"] != "single"}
  strategies = sorted({s for s, _ in dm if (s, low) in dm and (s, high) in dm})
  comps = stats.adjust([stats.welch_test(dm[(s, high)], dm[(s, low)]) for s in strategies])
  pct = lambda ci: f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"
  lines = ["| strategy | Δm (%) r=0 [95% CI] | Δm (%) r=1 [95% CI] | r=1 − r=0 [95% CI] | p (Welch) | p Holm | |",
           "|---|---|---|---|---|---|---|"]
  for s, c in zip(strategies, comps):
    lo, hi = dm[(s, low)], dm[(s, high)]
    lines.append(f"| {s} | {100 * sum(lo) / len(lo):+.2f} {pct(stats.t_interval(lo))} | {100 * sum(hi) / len(hi):+.2f} "
                 f"{pct(stats.t_interval(hi))} | {100 * c['diff']:+.2f} {pct(c['ci'])} | {stats.fmt_p(c['p'])} | "
                 f"{stats.fmt_p(c['p_adj'])} | {stats.arrow(c)} |")
  return "\n".join(lines) + "\n"


def main(argv) -> int:
  start = time.time()
  rc = cli.main([f"--experiment={EXPERIMENT}", *argv])
  wall = time.time() - start
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  exp_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("--exp_dir=")),
                 "/tmp/mtl_compare/relatedness_sweep")
  results = pathlib.Path(exp_dir) / "results.json"
  if results.exists():
    data = json.loads(results.read_text())
    ran = [c for c in data["cells"] if c.get("wall_s")]
    print(f"\nrelatedness sweep: {len(data['cells'])} cells; this invocation {wall / 60:.1f} min wall, "
          f"{(usage.ru_utime + usage.ru_stime) / 60:.1f} CPU-min in cells; "
          f"mean cell wall {sum(c['wall_s'] for c in ran) / max(len(ran), 1):.1f} s over {len(ran)} cells")
    print("delta-m (%) by relatedness, mean ± std over seeds:")
    rows = {}
    for g in data["groups"]:
      if g["mixture"].startswith("synthetic_r") and g["delta_m"]["mean"] is not None:
        r = int(g["mixture"].split("_")[1][1:]) / 100
        std = g["delta_m"]["std"]
        rows.setdefault(g["strategy"], {})[r] = f"{100 * g['delta_m']['mean']:+6.2f} ± " + (
            "n/a " if std is None else f"{100 * std:4.2f}")
    rs = sorted({r for v in rows.values() for r in v})
    print(f"  {'strategy':14s}" + "".join(f"{'r=' + format(r, 'g'):>17s}" for r in rs))
    for s, by_r in rows.items():
      print(f"  {s:14s}" + "".join(f"{by_r.get(r, '–'):>17s}" for r in rs))
    ends = ends_table(data["groups"])
    (pathlib.Path(exp_dir) / "relatedness_ends.md").write_text(ends)
    print("r=1 vs r=0, per strategy (Welch t-test on the seeds' delta-m, Holm over strategies):\n" + ends)
    print(f"report: {pathlib.Path(exp_dir) / 'report.md'}")
  return rc


if __name__ == "__main__":
  os.chdir(REPO)
  sys.exit(main(sys.argv[1:]))
