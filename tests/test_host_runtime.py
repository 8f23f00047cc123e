"""run/host_runtime.py: glibc keeps freed memory for the next step; the import-time heap is frozen out of gc.

Checked in child processes (both settings are process-wide and once per process), against glibc's own
bookkeeping (mallinfo2: how many blocks are mmapped), and mtl-train applies them only as the binary."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from mtl_jax import train as train_bin
from mtl_jax.run import host_runtime

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# a 10 MiB malloc: glibc's default serves it with mmap (one more mmapped block); tuned, it comes from the heap
PROBE = textwrap.dedent("""
    import ctypes, sys
    from mtl_jax.run import host_runtime
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    applied = host_runtime.tune_allocator()
    again = host_runtime.tune_allocator()
    before = libc.mallinfo2().hblks
    block = libc.malloc(10 << 20)
    during = libc.mallinfo2().hblks
    libc.free(block)
    print(applied, again, during - before)
""")


def _probe(**env):
  out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                       env={**os.environ, **env}).stdout.split()
  return out[0] == "True", out[1] == "True", int(out[2])


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt / mallinfo2")
def test_tuned_allocator_serves_large_blocks_from_the_heap():
  applied, again, mmapped = _probe(MTL_JAX_MALLOC="")
  assert applied and again
  assert mmapped == 0


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt / mallinfo2")
def test_malloc_default_opts_out():
  applied, again, mmapped = _probe(MTL_JAX_MALLOC="default")
  assert not applied and not again
  assert mmapped == 1  # glibc's own default: a 10 MiB block is mmapped


def test_freeze_imports_moves_the_live_heap_out_of_collections():
  code = ("import gc; from mtl_jax.run import host_runtime; n = gc.get_freeze_count(); "
          "host_runtime.freeze_imports(); print(n, gc.get_freeze_count())")
  before, after = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                          check=True).stdout.split())
  assert before == 0 and after > 10_000


class _Called(Exception):
  pass


def _record(monkeypatch):
  calls = []
  monkeypatch.setattr(host_runtime, "tune_allocator", lambda: calls.append("tune_allocator"))
  monkeypatch.setattr(host_runtime, "freeze_imports", lambda: calls.append("freeze_imports"))
  from mtl_jax.run import trainer

  def fake_train(**kwargs):
    raise _Called(kwargs)
  monkeypatch.setattr(trainer, "train", fake_train)
  return calls


ARGS = ["--gin_file=gin/runs/quickstart.gin", "--gin.MODEL_DIR=/tmp/unused"]


def test_the_binary_applies_both_before_training(monkeypatch):
  calls = _record(monkeypatch)
  monkeypatch.setattr(sys, "argv", ["mtl-train", *ARGS])
  with pytest.raises(_Called):
    train_bin.main()
  assert calls == ["tune_allocator", "freeze_imports"]


def test_an_in_process_call_leaves_the_process_alone(monkeypatch):
  calls = _record(monkeypatch)
  with pytest.raises(_Called):
    train_bin.main(ARGS)
  assert calls == []
