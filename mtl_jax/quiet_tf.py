"""TensorFlow without its CPU-only start-up noise.

TF (only the seqio input pipeline here) prints "Could not find cuda drivers on your
machine", "failed call to cuInit", oneDNN and CPU-feature notes from C++ (absl) before
its logging is initialised, so TF_CPP_MIN_LOG_LEVEL does not silence them; a newcomer
reads them as errors. `install()` (called by mtl_jax/__init__.py, so every entry point
gets it) hooks the first `import tensorflow`: the import and TF's GPU discovery
(`set_visible_devices([], 'GPU')`: TF never needs a GPU here) run with file descriptor 2
captured, and every captured line that is not one of these known notes is written back.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|Could not find cuda drivers|"
    r"failed call to cuInit|cuda_platform\.cc|cuda_executor\.cc|oneDNN custom operations|cpu_feature_guard\.cc|"
    r"This TensorFlow binary is optimized|To enable the following instructions|rebuild TensorFlow with|"
    r"Unable to register cu(?:DNN|FFT|BLAS) factory|computation_placer\.cc|TF-TRT Warning")


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern = NOISE):
  """Captures fd 2 (C++ writes included) for the block, then writes back the lines `noise` does not match."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      kept = [line for line in captured.read().decode(errors="replace").splitlines(True) if not noise.search(line)]
      if kept:
        os.write(2, "".join(kept).encode())


class _QuietLoader(importlib.abc.Loader):
  def __init__(self, inner):
    self.inner = inner

  def create_module(self, spec):
    return self.inner.create_module(spec)

  def exec_module(self, module):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # no "oneDNN supports DT_INT64 only ... AVX-512" E0000
    with filtered_stderr():
      self.inner.exec_module(module)
      module.config.set_visible_devices([], "GPU")  # the cuInit probe happens here, inside the filter


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
  """Wraps the loader of the top-level 'tensorflow' package; inert once it is imported."""

  _busy = False

  def find_spec(self, name, path=None, target=None):
    if name != "tensorflow" or self._busy or "tensorflow" in sys.modules:
      return None
    self._busy = True
    try:
      spec = importlib.util.find_spec(name)
    finally:
      self._busy = False
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


def install() -> None:
  if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlow())
