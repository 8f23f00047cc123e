"""`python -m mtl_jax [--help]`: the tools, one line each (each has its own --help)."""

from __future__ import annotations

import sys

TOOLS = (
    ("mtl-train", "mtl_jax.train", "train one multi-task run from gin files (resumes from MODEL_DIR)"),
    ("mtl-compare", "mtl_jax.compare", "a grid of strategies x mixtures x seeds, report with delta-m"),
    ("mtl-transfer", "mtl_jax.transfer", "transfer matrix: sources x targets x regimes x seeds, two stages"),
    ("mtl-probe", "mtl_jax.probe", "linear / MLP probes on frozen per-layer features, learning curves"),
    ("mtl-taskemb", "mtl_jax.taskemb", "task embeddings (TextEmb, TaskEmb, TAG affinity), source ranking"),
    ("mtl-merge", "mtl_jax.merge", "merge single-task runs (task arithmetic, TIES, DARE, Fisher, RegMean) into one MODEL_DIR"),
    ("mtl-predict", "mtl_jax.predict", "predictions of a trained MODEL_DIR on texts / JSONL"),
    ("mtl-encode", "mtl_jax.pretrained.encode", "texts -> ids, mask, final hidden states (npz)"),
    ("mtl-export", "mtl_jax.pretrained.export", "a trained trunk -> Hugging Face model directory"),
)


def usage() -> str:
  width = max(len(name) for name, _, _ in TOOLS)
  lines = ["mtl_jax tools (each: TOOL --help, or python -m MODULE --help):", ""]
  lines += [f"  {name:<{width}}  {what}   [python -m {module}]" for name, module, what in TOOLS]
  return "\n".join(lines)


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  print(usage())
  return 0 if not argv or argv[0] in ("-h", "--help") else 2


if __name__ == "__main__":
  sys.exit(main())
