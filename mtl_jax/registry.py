"""A name -> factory registry with one clear error for an unknown name (sharing strategies, weighting methods)."""

from __future__ import annotations

import difflib
from typing import Callable


class Registry:
  """`register(name)` decorates a factory; `get(name)` returns it or raises naming the choices and the fix."""

  def __init__(self, what: str, gin_dir: str):
    self.what, self.gin_dir = what, gin_dir  # e.g. 'sharing strategy', 'gin/sharing'
    self._factories: dict[str, Callable] = {}

  def register(self, name: str):
    def wrap(factory):
      self._factories[name] = factory
      return factory
    return wrap

  def names(self) -> tuple[str, ...]:
    return tuple(sorted(self._factories))

  def get(self, name: str) -> Callable:
    if name not in self._factories:
      close = difflib.get_close_matches(str(name), list(self._factories), n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"unknown {self.what} {name!r}; available: {', '.join(self.names())}.{hint} "
                       f"Include one of {self.gin_dir}/*.gin")
    return self._factories[name]
