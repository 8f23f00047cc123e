"""The shell commands of README.md and docs/: found, classified and turned into scripts that run
them at tiny sizes (tests/test_docs.py).

A command is what a fenced ```bash block holds (backslash continuations joined, heredocs kept with
their command). Every one is either run by the docs test or marked on the line before it (or at its
end) with `# long run: <measured time>` or `# needs: <what this box lacks>` (a TPU pod, SLURM). The
suite's own command (`python -m pytest ...`) is what runs the docs test, so it is not run again.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHELL_LANGS = ("bash", "sh", "shell", "console")
MARK = re.compile(r"#\s*(long run|needs):\s*\S")
TOOL_START = re.compile(r"^\s*(python3? -m mtl_jax|mtl-[a-z]+ )")


@dataclasses.dataclass
class Command:
  page: str
  line: int
  text: str
  mark: str | None  # 'long run' / 'needs' / None (run by the test)

  @property
  def is_suite(self) -> bool:
    return bool(re.match(r"^\s*python3? -m pytest\b", self.text))


def pages() -> list[pathlib.Path]:
  return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: pathlib.Path):
  """(language, first line number, body lines) of each fenced block."""
  lines = path.read_text().splitlines()
  i = 0
  while i < len(lines):
    m = re.match(r"^\s*```\s*([\w+-]*)", lines[i])
    if m:
      lang, start, body = m.group(1).lower(), i + 2, []
      i += 1
      while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
        body.append(lines[i])
        i += 1
      yield lang, start, body
    i += 1


def commands_of(lang: str, start: int, body: list[str], page: str) -> list[Command]:
  out, pending, i = [], None, 0
  while i < len(body):
    line = body[i].rstrip()
    stripped = line.strip()
    if not stripped:
      i += 1
      continue
    if stripped.startswith("#"):
      m = MARK.search(stripped)
      pending = m.group(1) if m else pending
      i += 1
      continue
    first, text = i, line
    while text.endswith("\\") and i + 1 < len(body):
      i += 1
      text = text[:-1].rstrip() + " " + body[i].strip()
    here = re.search(r"<<-?\s*'?(\w+)'?", text)
    if here:  # the heredoc's lines belong to this command
      end = here.group(1)
      while i + 1 < len(body) and body[i + 1].strip() != end:
        i += 1
        text += "\n" + body[i]
      i += 1
      text += "\n" + end
    m = MARK.search(text.splitlines()[0])
    out.append(Command(page, start + first, text, (m.group(1) if m else pending)))
    pending = None
    i += 1
  del lang
  return out


def all_commands() -> list[Command]:
  out = []
  for path in pages():
    rel = str(path.relative_to(ROOT))
    for lang, start, body in blocks(path):
      if lang in SHELL_LANGS:
        out.extend(commands_of(lang, start, body, rel))
  return out


def untagged_tool_lines() -> list[str]:
  """Tool commands hiding in untagged blocks (they would escape the test; output is tagged `text`)."""
  bad = []
  for path in pages():
    for lang, start, body in blocks(path):
      if not lang:
        bad += [f"{path.relative_to(ROOT)}:{start + k}: {line.strip()[:60]}"
                for k, line in enumerate(body) if TOOL_START.match(line)]
  return bad


# Each tool runs at a tiny size: later flags win, so these go after the command's own. Short inputs and one
# evaluation, of each split's first 64 examples (gin evaluation.max_examples), at the last step: evaluating
# the whole validation and test splits was most of a pretrained command's time (measured 6 Dec: 52 of 104 s
# of the MiniLM quickstart at 4 steps, evaluating every 2 steps).
PRELUDE = r'''
set -euo pipefail
cd "$REPO"
pip() { echo "(pip: installed already)"; }
python() {
  if [[ "${1:-}" == -m ]]; then
    case "${2:-}" in
      mtl_jax.train) command python3 "$@" --gin.TRAIN_STEPS=4 --gin.trainer.train.eval_period=4 \
          --gin.trainer.train.checkpoint_period=2 --gin.BATCH_SIZE=8 "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}" \
          --gin.evaluation.max_examples.value=64 --no_progress; return;;
      mtl_jax.compare) command python3 "$@" --binding=TRAIN_STEPS=4 --binding=BATCH_SIZE=8 --seeds=0 \
          --binding=trainer.train.eval_period=4 "--binding=TASK_FEATURE_LENGTHS={'inputs': 32}" \
          --binding=evaluation.max_examples.value=64; return;;
    esac
  fi
  command python3 "$@"
}
python3() { python "$@"; }
for tool in train compare transfer probe taskemb merge predict encode export; do
  mod="mtl_jax.$tool"
  case $tool in encode|export) mod="mtl_jax.pretrained.$tool";; esac
  eval "mtl-$tool() { python -m $mod \"\$@\"; }"
done
'''


def script(commands: list[Command], sandbox: pathlib.Path) -> str:
  """One bash script running a page's commands in order; /tmp/ paths move into the sandbox."""
  body = []
  for c in commands:
    if c.mark or c.is_suite:
      body.append(f": skipped '{c.mark or 'the suite itself'}' {c.page}:{c.line}")
      continue
    body.append(f"echo '>>> {c.page}:{c.line}'")
    body.append(c.text.replace("/tmp/", f"{sandbox}/"))
  return PRELUDE + "\n".join(body) + "\n"
