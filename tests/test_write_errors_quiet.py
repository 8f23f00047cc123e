"""After a failed write, the noise that follows it is dropped and everything else still gets through.

Why: on a real full disk tensorstore's writes still in flight hit orbax's closed event loop and print
'Event loop is closed' tracebacks (through sys.excepthook, from its own threads) after mtl-train's one-line
error, so that line was not the last one (a CI failure of the real-tmpfs test in test_resilience)."""

import asyncio
import errno
import logging
import sys
import threading

from mtl_jax.run import write_errors


def _closed_loop_error():
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)
  except RuntimeError as e:
    return e
  raise AssertionError("a closed loop accepted a callback")


def _in_thread(error):
  def run():
    raise error
  thread = threading.Thread(target=run)
  thread.start()
  thread.join()


def test_quiet_drops_the_aftermath_of_a_failed_write_and_passes_the_rest(monkeypatch, caplog):
  seen_main, seen_threads = [], []
  monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: seen_main.append(value))
  monkeypatch.setattr(threading, "excepthook", lambda args: seen_threads.append(args.exc_value))
  before = sys.excepthook, threading.excepthook, sys.unraisablehook
  full = OSError(errno.ENOSPC, "No space left on device")
  other = KeyError("an unrelated bug")
  with write_errors.quiet():
    sys.excepthook(RuntimeError, _closed_loop_error(), None)  # what tensorstore's callbacks print through
    sys.excepthook(OSError, full, None)
    sys.excepthook(KeyError, other, None)
    _in_thread(_closed_loop_error())
    _in_thread(other)
    with caplog.at_level(logging.ERROR):
      logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=ValueError(
          "RESOURCE_EXHAUSTED: Failed to write 481936 bytes to file 6: No space left on device [os_error_code='28']"))
      logging.getLogger("asyncio").error("something else broke")
  assert seen_main == [other] and seen_threads == [other]
  assert [r.getMessage() for r in caplog.records] == ["something else broke"]
  assert (sys.excepthook, threading.excepthook, sys.unraisablehook) == before  # undone after the run
