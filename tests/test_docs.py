"""The manual stays true: generated reference pages match the code, every shell command of README
and docs/ is run (at tiny sizes, marker e2e) or marked as a long run, and README stays a landing page."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "docs"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import docs_commands  # noqa: E402
from conftest import subprocess_env  # noqa: E402

ROOT = docs_commands.ROOT
README_MAX_LINES = 220


def _flags(text: str) -> set[str]:
  return set(re.findall(r"(?<![\w-])--[a-z][a-z_]*", text))


def test_cli_reference_matches_every_tool():
  import gen_cli_reference
  fresh, page = gen_cli_reference.render(), (ROOT / "docs/reference/cli.md").read_text()
  tools = lambda t: set(re.findall(r"(?m)^## (\S+)", t))  # noqa: E731
  assert tools(fresh) == tools(page), "tools changed: rerun python docs/gen_cli_reference.py"
  assert _flags(fresh) == _flags(page), (
      f"flags changed {sorted(_flags(fresh) ^ _flags(page))}: rerun python docs/gen_cli_reference.py")


def test_gin_reference_names_every_knob():
  import gen_gin_reference

  def knobs(text):
    out, current = set(), None
    for line in text.splitlines():
      m = re.match(r"^## `([^`]+)`", line)
      if m:
        current = m.group(1)
        out.add(current)
      m = re.match(r"^\| `([^`]+)` \|", line)
      if m and current:
        out.add(f"{current}.{m.group(1)}")
    return out

  fresh, page = knobs(gen_gin_reference.render()), knobs((ROOT / "docs/reference/gin.md").read_text())
  assert fresh == page, f"knobs changed {sorted(fresh ^ page)}: rerun python docs/gen_gin_reference.py"


def test_every_command_is_run_or_marked():
  commands = docs_commands.all_commands()
  assert len(commands) > 20
  assert not docs_commands.untagged_tool_lines(), docs_commands.untagged_tool_lines()
  runnable = [c for c in commands if not c.mark and not c.is_suite]
  assert any("mtl_jax.train" in c.text for c in runnable)


def test_long_runs_say_how_long(tmp_path):
  """A `# long run:` mark carries the measured time (what a reader needs to plan)."""
  for path in docs_commands.pages():
    for k, line in enumerate(path.read_text().splitlines(), 1):
      m = re.search(r"#\s*long run:(.*)$", line)
      if m:
        assert re.search(r"\d+(\.\d+)?\s*(s|min|h|hours?|minutes?)\b", m.group(1)), f"{path.name}:{k}: {line}"


def test_the_harness_sees_marks_and_heredocs():
  body = ["# long run: 9 min on 2 cores", "python -m mtl_jax.train --gin_file=a.gin \\", "  --gin.X=1",
          "cat > /tmp/x.gin <<'GIN'", "A = 1", "GIN", "mtl-predict --model_dir=/tmp/r  # needs: a GPU"]
  cs = docs_commands.commands_of("bash", 1, body, "p.md")
  assert [c.mark for c in cs] == ["long run", None, "needs"]
  assert cs[0].text == "python -m mtl_jax.train --gin_file=a.gin --gin.X=1"
  assert cs[1].text.splitlines() == ["cat > /tmp/x.gin <<'GIN'", "A = 1", "GIN"]
  script = docs_commands.script(cs, pathlib.Path("/sb"))
  assert "cat > /sb/x.gin" in script and "skipped 'long run'" in script and "skipped 'needs'" in script


def test_readme_is_a_landing_page():
  lines = (ROOT / "README.md").read_text().splitlines()
  assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
  first = [c for c in docs_commands.all_commands() if c.page == "README.md"][:2]
  assert first[0].text.startswith("pip install -e '.[test]' && python -m mtl_jax.train")
  assert first[1].text == "python -m pytest -q -n 2"


@pytest.mark.e2e
@pytest.mark.parametrize("page", [str(p.relative_to(ROOT)) for p in docs_commands.pages()])
def test_the_commands_of_each_page_run(page, tmp_path):
  commands = [c for c in docs_commands.all_commands() if c.page == page]
  if not any(not c.mark and not c.is_suite for c in commands):
    pytest.skip(f"{page}: no command to run")
  script = tmp_path / "page.sh"
  script.write_text(docs_commands.script(commands, tmp_path))
  # one CPU device, as a user's shell has, with the suite's fast XLA compiles: the commands are checked for
  # running, not for speed (measured 6 Dec: the tutorial page 147 -> 132 s; with its tiny sizes and capped
  # evaluation the MiniLM page then takes 42 s)
  env = subprocess_env(REPO=str(ROOT), PYTHONPATH=str(ROOT))
  done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=1800)
  assert done.returncode == 0, f"{page}: a command failed\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
