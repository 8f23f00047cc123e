"""Parameter groups by path rules: each parameter's learning-rate multiplier (0 = frozen).

Fine-tuning a pretrained trunk needs parts of it frozen or slowed (big_vision style
path rules). A path is the '/'-joined parameter name, e.g. 'embedder/token/embedding',
'trunk/trunk/layer_0/mlp/wi/kernel', 'trunk/sluice/alpha_0', 'heads/kernel'; patterns
are Python regexes matched with re.search. For one path, the first of these decides:
  1. `freeze` (any pattern matches): 0, no update and no optimizer state;
  2. `rules` [(regex, multiplier), ...], first match wins (0 also freezes);
  3. layer-wise decay x role: layer k of K (the 'layer_<k>' path segment) gets
     layer_decay ** (K-1-k), the embedder layer_decay ** K, everything else 1; times
     mixing_multiplier for mixing weights (sluice / cross-stitch alpha_k and beta, MMoE
     gate_kernel / gate_bias) or head_multiplier for the heads.
optim.make_optimizer turns the multipliers into optax.multi_transform groups. In gin:
    param_groups.freeze = ['^embedder/']      (presets: gin/optim/*.gin)
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Sequence

import flax.linen as nn
import gin
import jax
import numpy as np

log = logging.getLogger("mtl_jax")

FROZEN = "frozen"  # the group label of multiplier 0
EMBEDDER = r"^embedder/"
HEADS = r"^heads/"
MIXING = r"(?:^|/)(?:(?:sluice|cross_stitch)/alpha_\d+|sluice/beta|mmoe/gate_(?:kernel|bias))$"
_LAYER = re.compile(r"(?:^|/)layer_(\d+)(?:/|$)")
_WARNED: set = set()  # groups already warned about (the multipliers are recomputed at each trace)


def _compile(pattern, where: str) -> re.Pattern:
  if not isinstance(pattern, str):
    raise ValueError(f"{where} pattern {pattern!r} must be a regex string")
  try:
    return re.compile(pattern)
  except re.error as e:
    raise ValueError(f"{where} pattern {pattern!r} is not a valid regex ({e}); fix the pattern") from None


def _multiplier(value, where: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
    raise ValueError(f"{where}={value!r} must be a finite number >= 0 (0 freezes)")
  return float(value)


def _is_leaf(x) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)  # a boxed (nn.Partitioned) param is one parameter


def _path(keypath) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in keypath)


def paths(params) -> list[str]:
  """The '/'-joined path of every parameter (boxed or not)."""
  return [_path(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_leaf)[0]]


def label(multiplier: float) -> str:
  """Group name of a multiplier: 'frozen', 'x1', 'x0_8', ... (no '.': orbax joins keys with it)."""
  return FROZEN if multiplier == 0 else "x" + f"{multiplier:.12g}".replace(".", "_")


@dataclasses.dataclass(frozen=True)
class Groups:
  """Path rules -> per-parameter learning-rate multiplier; the defaults change nothing."""

  freeze: tuple[str, ...] = ()
  layer_decay: float = 1.0
  mixing_multiplier: float = 1.0
  head_multiplier: float = 1.0
  rules: tuple[tuple[str, float], ...] = ()

  def __post_init__(self):
    if isinstance(self.freeze, str) or not isinstance(self.freeze, (list, tuple)):
      raise ValueError(f"param_groups.freeze={self.freeze!r} must be a list of regexes, e.g. ['^embedder/']")
    for p in self.freeze:
      _compile(p, "param_groups.freeze")
    if isinstance(self.rules, str) or not isinstance(self.rules, (list, tuple)):
      raise ValueError(f"param_groups.rules={self.rules!r} must be a list of (regex, multiplier) pairs")
    rules = []
    for rule in self.rules:
      if not isinstance(rule, (list, tuple)) or len(rule) != 2:
        raise ValueError(f"param_groups.rules entry {rule!r} must be a (regex, multiplier) pair")
      _compile(rule[0], "param_groups.rules")
      rules.append((rule[0], _multiplier(rule[1], f"param_groups.rules multiplier for {rule[0]!r}")))
    decay = self.layer_decay
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
      raise ValueError(f"param_groups.layer_decay={decay!r} must be in (0, 1] (1 = no decay)")
    object.__setattr__(self, "freeze", tuple(self.freeze))
    object.__setattr__(self, "rules", tuple(rules))
    object.__setattr__(self, "layer_decay", float(decay))
    for field in ("mixing_multiplier", "head_multiplier"):
      object.__setattr__(self, field, _multiplier(getattr(self, field), f"param_groups.{field}"))

  @property
  def active(self) -> bool:
    """False when every parameter gets multiplier 1 whatever the model: the plain optimizer."""
    return self != Groups()

  def multipliers(self, params) -> dict[str, float]:
    """{path: multiplier} for every parameter; raises on a pattern matching nothing or nothing trainable."""
    all_paths = paths(params)
    example = all_paths[0] if all_paths else "(no parameters)"
    def matching(pattern, where):
      rx = re.compile(pattern)
      hits = {p for p in all_paths if rx.search(p)}
      if not hits:
        raise ValueError(f"{where} pattern {pattern!r} matches no parameter (paths look like {example!r}); "
                         "fix the pattern")
      return hits
    frozen = set().union(*(matching(p, "param_groups.freeze") for p in self.freeze))
    ruled = [(matching(p, "param_groups.rules"), m) for p, m in self.rules]
    layers = {p: int(m.group(1)) for p in all_paths if (m := _LAYER.search(p))}
    if self.layer_decay != 1 and not layers:
      raise ValueError(f"param_groups.layer_decay={self.layer_decay} but no parameter path has a 'layer_<k>' "
                       f"segment (paths look like {example!r}); leave layer_decay at 1")
    num_layers = max(layers.values(), default=-1) + 1
    mixing, heads, embedder = (re.compile(p) for p in (MIXING, HEADS, EMBEDDER))
    if self.mixing_multiplier != 1 and not any(mixing.search(p) for p in all_paths) and self not in _WARNED:
      _WARNED.add(self)
      log.warning("param_groups.mixing_multiplier=%s: this model has no mixing weights; it has no effect",
                  self.mixing_multiplier)
    out = {}
    for path in all_paths:
      rule = next((m for hits, m in ruled if path in hits), None)
      if path in frozen:
        m = 0.0
      elif rule is not None:
        m = rule
      else:
        depth = num_layers - 1 - layers[path] if path in layers else num_layers if embedder.search(path) else 0
        m = self.layer_decay ** depth
        m *= self.mixing_multiplier if mixing.search(path) else self.head_multiplier if heads.search(path) else 1.0
      out[path] = float(f"{m:.12g}")  # decay ** k as written by hand (0.8 ** 2 -> 0.64)
    if all_paths and not any(out.values()):
      raise ValueError(f"param_groups freeze={list(self.freeze)} rules={list(self.rules)} freeze every parameter: "
                       "nothing would train; leave some parameters (e.g. the heads) unfrozen")
    return out

  def labels(self, params):
    """The params tree (boxed params count as leaves) with each leaf replaced by its group label."""
    mult = self.multipliers(params)
    return jax.tree_util.tree_map_with_path(lambda kp, _: label(mult[_path(kp)]), params, is_leaf=_is_leaf)

  def trainable(self, params):
    """Tree of bools: True where the parameter gets updates (multiplier > 0)."""
    return jax.tree.map(lambda name: name != FROZEN, self.labels(params))

  def summary(self, params) -> str:
    """One line for the start log: parameter counts per multiplier, frozen ones first."""
    mult = self.multipliers(params)
    sizes = {_path(kp): int(np.prod(getattr(leaf, "value", leaf).shape))
             for kp, leaf in jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_leaf)[0]}
    counts: dict[float, int] = {}
    for path, m in mult.items():
      counts[m] = counts.get(m, 0) + sizes[path]
    parts = [f"frozen={counts.pop(0.0, 0):,}"] + [f"lr_x{m:g}={n:,}" for m, n in sorted(counts.items())]
    return "param groups: " + " ".join(parts)


@gin.configurable("param_groups")
def configured(freeze: Sequence[str] = (), layer_decay: float = 1.0, mixing_multiplier: float = 1.0,
               head_multiplier: float = 1.0, rules: Sequence[tuple[str, float]] = ()) -> Groups:
  """The gin-bound groups (`param_groups.freeze = [...]` etc.); see the module docstring."""
  return Groups(freeze=freeze, layer_decay=layer_decay, mixing_multiplier=mixing_multiplier,
                head_multiplier=head_multiplier, rules=rules)
