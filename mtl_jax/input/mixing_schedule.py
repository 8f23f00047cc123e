"""Mixing rates as a function of the step: annealed, staged, jiant-style expressions.

Why: fixed rates force one trade-off for the whole run; T5/mT5-style temperature annealing,
staged mixtures (pre-finetune on everything, then focus) and jiant's time-dependent sampler
move it during training. gin picks one (default 'static': the fixed `mixing.rates`, and the
input pipeline is exactly the old one):

  mixing_schedule.schedule.kind = 'interpolate'  # rate set `start` -> `end`, linear over `steps`
                                = 'temperature'  # n ** (1 / tau), tau linear temperatures[0] -> [1]
                                = 'staged'       # stages = [(until_step, rate set), ..., (None, set)]
                                = 'jiant'        # expressions = {'task': '1 / sqrt(t)', ...}
A rate set is a `mixing.rates` strategy name ('proportional', 'equal', 'unimax', ...) or a
{task: weight} dict. The rates of batch i (0-based) are `rates_at([i])`: a pure function of i,
so the stream is a pure function of (seed, batch index) and a resume (which replays to the
batch index in the checkpoint) draws exactly what an uninterrupted run draws.
jiant's t counts from 1 (the step being taken), so 't' in an expression is i + 1.
"""

from __future__ import annotations

import ast
import operator
from typing import Mapping, Sequence

import gin
import numpy as np

from mtl_jax.input import mixing

KINDS = ("static", "interpolate", "temperature", "staged", "jiant")


class Schedule:
  """rates_at(batch_index [S]) -> rates [S, T] over `task_names` (sorted), rows summing to 1."""

  def __init__(self, task_names: Sequence[str], fn, description: str):
    self.task_names = tuple(task_names)
    self._fn = fn
    self.description = description

  def rates_at(self, batch_index) -> np.ndarray:
    i = np.asarray(batch_index, np.int64).reshape(-1)
    raw = np.asarray(self._fn(i), np.float64).reshape(len(i), len(self.task_names))
    if not np.all(np.isfinite(raw)) or np.any(raw < 0) or np.any(raw.sum(1) <= 0):
      bad = int(np.flatnonzero(~np.all(np.isfinite(raw) & (raw >= 0), 1) | (raw.sum(1) <= 0))[0])
      raise ValueError(f"mixing schedule {self.description}: rates at batch {int(i[bad])} are "
                       f"{dict(zip(self.task_names, raw[bad].round(6)))}; they must be finite, >= 0, not all 0")
    return raw / raw.sum(1, keepdims=True)

  def mean_rates(self, start: int, stop: int, chunk: int = 8192) -> np.ndarray:
    """The rates summed over batches start..stop-1 (chunked: cheap at 100k steps x 128 tasks)."""
    total = np.zeros(len(self.task_names))
    for a in range(start, stop, chunk):
      total += self.rates_at(np.arange(a, min(stop, a + chunk))).sum(0)
    return total


def _rate_set(provider, spec) -> np.ndarray:
  names = mixing.task_names_sorted(provider)
  if isinstance(spec, str):
    r = mixing.rates(provider, strategy=spec)
  elif isinstance(spec, Mapping):
    r = mixing.rates(provider, strategy="explicit", weights=dict(spec))
  else:
    raise ValueError(f"a mixing-schedule rate set must be a strategy name {mixing.STRATEGIES} or a "
                     f"{{task: weight}} dict, got {spec!r}")
  return np.array([r[n] for n in names])


def _progress(i, steps):
  return np.clip(i.astype(np.float64) / float(steps), 0.0, 1.0)[:, None]


_FUNCS = {"sqrt": np.sqrt, "exp": np.exp, "log": np.log, "minimum": np.minimum, "maximum": np.maximum,
          "abs": np.abs}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}


def expression(text: str):
  """A jiant-style rate expression in t ('1', '2 * t', '1 / sqrt(t)', 'minimum(t / 100, 1)') ->
  a numpy function of t; only arithmetic, numbers, t and the functions above are allowed."""
  try:
    tree = ast.parse(str(text), mode="eval").body
  except SyntaxError:
    raise ValueError(f"mixing schedule expression {text!r} is not valid; write e.g. '1 / sqrt(t)'") from None

  def ev(node, t):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
      return np.full_like(t, float(node.value))
    if isinstance(node, ast.Name) and node.id == "t":
      return t
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
      return _OPS[type(node.op)](ev(node.left, t), ev(node.right, t))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
      return _OPS[type(node.op)](ev(node.operand, t))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
      return _FUNCS[node.func.id](*(ev(a, t) for a in node.args))
    raise ValueError(f"mixing schedule expression {text!r}: {ast.unparse(node)!r} is not allowed; use "
                     f"numbers, t, + - * / **, and {sorted(_FUNCS)}")

  ev(tree, np.ones(1))  # checked once, up front
  return lambda t: ev(tree, t)


@gin.configurable(module="mixing_schedule")
def schedule(provider, kind: str = "static", start="proportional", end="equal", steps: int = 1000,
             temperatures: Sequence[float] = (1.0, 5.0), maximum: int | None = None,
             stages: Sequence = (), expressions: Mapping[str, str] | None = None) -> Schedule | None:
  """The run's schedule over the provider's tasks, or None for 'static' (fixed `mixing.rates`)."""
  if kind not in KINDS:
    raise ValueError(f"mixing_schedule.schedule.kind={kind!r}; use one of {KINDS}")
  if kind == "static":
    return None
  names = mixing.task_names_sorted(provider)
  if kind in ("interpolate", "temperature") and (not isinstance(steps, int) or steps < 1):
    raise ValueError(f"mixing_schedule.schedule.steps must be an int >= 1, got {steps!r}")
  if kind == "interpolate":
    a, b = _rate_set(provider, start), _rate_set(provider, end)
    return Schedule(names, lambda i: (1 - _progress(i, steps)) * a + _progress(i, steps) * b,
                    f"interpolate {start!r} -> {end!r} over {steps} steps")
  if kind == "temperature":
    t0, t1 = (float(x) for x in temperatures)
    if min(t0, t1) <= 0:
      raise ValueError(f"mixing_schedule.schedule.temperatures must be > 0, got {temperatures!r}")
    sizes = np.array([float(mixing.num_train_examples(t)) for t in mixing.sorted_tasks(provider)])
    if maximum is not None:
      sizes = np.minimum(sizes, float(maximum))
    logn = np.log(np.maximum(sizes, 1e-12))[None]
    def fn(i):
      tau = t0 + (t1 - t0) * _progress(i, steps)
      z = logn / tau
      return np.exp(z - z.max(1, keepdims=True))
    return Schedule(names, fn, f"temperature {t0} -> {t1} over {steps} steps")
  if kind == "staged":
    return _staged(provider, names, stages)
  missing = sorted(set(names) - set(expressions or {}))
  extra = sorted(set(expressions or {}) - set(names))
  if missing or extra:
    raise ValueError(f"mixing_schedule.schedule.expressions must name exactly the tasks of {provider.name!r}; "
                     f"missing {missing}, not in it {extra}")
  fns = [expression(expressions[n]) for n in names]
  return Schedule(names, lambda i: np.stack([np.broadcast_to(f((i + 1).astype(np.float64)), i.shape)
                                             for f in fns], 1), "jiant expressions")


def _staged(provider, names, stages) -> Schedule:
  stages = list(stages)
  ends = [s[0] if isinstance(s, (list, tuple)) and len(s) == 2 else "bad" for s in stages]
  ok = stages and ends[-1] is None and all(isinstance(e, int) and e > 0 for e in ends[:-1]) and \
      all(a < b for a, b in zip(ends[:-2], ends[1:-1]))
  if not ok:
    raise ValueError(f"mixing_schedule.schedule.stages={stages!r}: give [(until_step, rate set), ..., "
                     "(None, rate set)] with increasing until_steps, e.g. [(1000, 'proportional'), (None, 'equal')]")
  table = np.stack([_rate_set(provider, s[1]) for s in stages])
  bounds = np.array(ends[:-1], np.int64)
  return Schedule(names, lambda i: table[np.searchsorted(bounds, i, side="right")],
                  f"staged at {ends[:-1]}")
