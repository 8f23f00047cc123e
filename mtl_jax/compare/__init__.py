"""mtl-compare: sharing strategies x mixtures x seeds (x gin axes) against single-task baselines.

grid.py (what to run) -> runner.py (run it through the train binary, skip/resume) ->
collect.py (read each MODEL_DIR) -> aggregate.py (mean ± std, delta-m, noise) ->
report.py + plots.py (results.csv/json, report.md, PNGs). cli.py is the command line.
"""
