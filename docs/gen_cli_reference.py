"""Writes docs/reference/cli.md from each tool's own `--help` (run: python docs/gen_cli_reference.py).

Why generated: a hand-kept flag list drifts; tests/test_docs.py fails when a tool's flags and this
page disagree, and says to rerun this script.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reference" / "cli.md"
# (tool, module whose main(argv) parses the flags, what it is for)
TOOLS = (
    ("mtl-train", "mtl_jax.train", "train one run from gin files; resumes from MODEL_DIR"),
    ("mtl-compare", "mtl_jax.compare.cli", "grids of strategies x mixtures x seeds, with a report"),
    ("mtl-transfer", "mtl_jax.transfer.cli", "transfer matrices (sources x targets x regimes x seeds)"),
    ("mtl-probe", "mtl_jax.probe.cli", "probes on frozen per-layer features"),
    ("mtl-taskemb", "mtl_jax.taskemb.cli", "task embeddings and source ranking"),
    ("mtl-merge", "mtl_jax.merge.cli", "merge single-task runs into one multi-task MODEL_DIR"),
    ("mtl-predict", "mtl_jax.predict.cli", "predictions of a trained MODEL_DIR"),
    ("mtl-encode", "mtl_jax.pretrained.encode", "texts -> ids, mask, hidden states"),
    ("mtl-export", "mtl_jax.pretrained.export", "a trained trunk -> Hugging Face directory"),
    ("mtl-lora-merge", "mtl_jax.pretrained.lora_merge", "one task's LoRA folded into the trunk -> HF directory"),
    ("data_stats", "mtl_jax.input.data_stats", "sizes, labels, lengths and rates of a task or mixture"),
)


def help_text(module: str) -> str | None:
  """The tool's --help output, or None when the module is not there (yet)."""
  try:
    mod = importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name and module.startswith(e.name):
      return None
    raise
  out = io.StringIO()
  os.environ["COLUMNS"] = "100"
  with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    mod.main(["--help"])
  return out.getvalue()


def render() -> str:
  parts = ["# Command-line tools", "",
           "Generated from each tool's `--help` by `python docs/gen_cli_reference.py` "
           "(a test fails when they disagree). `python -m mtl_jax --help` lists the tools.", ""]
  for tool, module, what in TOOLS:
    text = help_text(module)
    if text is None:
      continue
    parts += [f"## {tool}", "", f"{what}. `python -m {module.removesuffix('.cli')}`", "", "```text",
              text.rstrip(), "```", ""]
  return "\n".join(parts)


if __name__ == "__main__":
  sys.path.insert(0, str(ROOT))
  OUT.write_text(render())
  print(f"wrote {OUT}")
