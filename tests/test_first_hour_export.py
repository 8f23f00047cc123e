"""Issue #26 item 10 (export): the exported directory and every file in it, model.safetensors included
(safetensors writes 0600, the temporary directory is 0700), get the umask's usual modes like the other
files the project writes (0644 / 0755 with umask 022)."""

import os
import stat

from mtl_jax import file_modes
from mtl_jax.pretrained import checkpoint as ckpt_lib, export
from pretrained_fixtures import write_tiny_checkpoint


def test_exported_files_are_readable_like_the_rest(tmp_path):
  old = os.umask(0o022)
  try:
    tiny = ckpt_lib.open_checkpoint(write_tiny_checkpoint(tmp_path / "tiny", d=16, ff=32, layers=1))
    out = export.write(tmp_path / "exported", tiny.params(), tiny.encoder_config(), source=tiny.path)
  finally:
    os.umask(old)
  modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
  assert modes["model.safetensors"] == 0o644 and modes["config.json"] == 0o644
  assert modes[out.name] == 0o755
  assert set(modes.values()) <= {0o644, 0o755} and len(modes) > 3
  assert (ckpt_lib.open_checkpoint(out).params().keys() == tiny.params().keys())  # still the same export


def test_umask_is_honoured(tmp_path):
  (tmp_path / "d").mkdir(mode=0o700)
  (tmp_path / "d" / "f").write_text("x")
  os.chmod(tmp_path / "d" / "f", 0o600)
  old = os.umask(0o027)
  try:
    file_modes.as_usual(tmp_path / "d")
  finally:
    os.umask(old)
  assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o750
  assert stat.S_IMODE((tmp_path / "d" / "f").stat().st_mode) == 0o640
