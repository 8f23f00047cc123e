"""Task embeddings compared component by component, and the components' rankings fused into one.

Vu et al. (2020) keep TaskEmb as many separate vectors (every BERT parameter tensor, each layer's output,
each attention output, the [CLS] output, the classifier) and compare two tasks component by component
with cosine similarity; one concatenated vector (mtl_jax's former TaskEmb) lets the largest components
outweigh the rest. Combining into one ranking (documented choices, `combine`):
  'rrf'   reciprocal rank fusion (Cormack et al. 2009): per target, each component ranks the sources by
          cosine; a source scores sum_c 1 / (RRF_K + rank_c). RRF_K = 60 is Cormack et al.'s constant.
          This is how the paper fuses rankings as we read it (the constant is not stated there).
  'mean'  the mean of the component cosines (a simple alternative; not the paper's).
  NAME    one component alone (e.g. 'pooled', 'layer_3'): the per-component rows of the paper's analysis.
Components whose shapes differ between tasks (e.g. classifiers of 2- vs 5-class tasks) or that are all
zero for some task (a parameter the loss does not depend on, e.g. attention key biases) cannot be
compared by cosine and are left out, each named in `skipped`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

RRF_K = 60
COMBINE = ("rrf", "mean")


def of_fisher(f: Mapping) -> dict[str, np.ndarray]:
  """fisher.diagonal_fisher's output -> {component name: array}."""
  out = {f"param:{p}": np.asarray(v) for p, v in f.get("params", {}).items()}
  for name, key in (("layer", "activations"), ("attention", "attention")):
    if f.get(key) is not None:
      out.update({f"{name}_{k}": np.asarray(v) for k, v in enumerate(f[key])})
  if f.get("pooled") is not None:
    out["pooled"] = np.asarray(f["pooled"])
  out.update({f"classifier:{p}": np.asarray(v) for p, v in (f.get("classifier") or {}).items()})
  return out


def of_layers(layers: np.ndarray, prefix: str = "layer") -> dict[str, np.ndarray]:
  """[K, D] per-layer vectors (e.g. TextEmb's embeddings + every layer) -> {prefix_k: [D]}."""
  return {f"{prefix}_{k}": np.asarray(v) for k, v in enumerate(layers)}


def cosines(per_task: Sequence[Mapping[str, np.ndarray]], columns: Sequence[Mapping[str, np.ndarray]] | None = None
            ) -> tuple[dict[str, np.ndarray], list[str]]:
  """({component: [T, T] cosine}, skipped components) over the components every task has.

  With `columns`, entry [i, j] is cos(per_task[i], columns[j]): a target embedded from its own regime (rows)
  against every task embedded as a source (columns)."""
  columns = per_task if columns is None else columns
  every = list(per_task) + list(columns)
  names = sorted(set.intersection(*(set(t) for t in every))) if every else []
  names += sorted({n for t in every for n in t} - set(names))  # in some tasks only: skipped below
  out, skipped = {}, []
  for name in names:
    arrays = [t.get(name) for t in every]
    if any(a is None for a in arrays) or len({np.shape(a) for a in arrays}) != 1:
      skipped.append(name)
      continue
    flat = np.stack([np.ravel(a).astype(np.float64) for a in arrays])
    norms = np.linalg.norm(flat, axis=1)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
      skipped.append(name)
      continue
    unit = flat / norms[:, None]
    out[name] = np.clip(unit[:len(per_task)] @ unit[len(per_task):].T, -1.0, 1.0)
  return out, skipped


def _ranks(scores: np.ndarray) -> np.ndarray:
  """1-based rank of each entry, highest first; ties share the best rank of their block."""
  order = np.argsort(-scores, kind="stable")
  ranks = np.empty(len(scores))
  ranks[order] = np.arange(1, len(scores) + 1)
  for value in np.unique(scores):
    tied = scores == value
    ranks[tied] = ranks[tied].min()
  return ranks


def predicted(per_component: Mapping[str, np.ndarray], names: Sequence[str],
              sources_of: Mapping[str, Sequence[str]], how: str = "rrf") -> dict[str, dict[str, float]]:
  """predicted[target][source] (higher = expected to transfer better) from the component cosines.

  rrf ranks each target's own candidate sources per component, so non-candidates never shift a rank."""
  if not per_component:
    raise ValueError("no comparable TaskEmb component: every one differs in shape or is zero for some task")
  index = {n: i for i, n in enumerate(names)}
  if how in per_component or how == "mean":
    m = per_component[how] if how in per_component else np.mean(list(per_component.values()), axis=0)
    return {t: {s: float(m[index[t], index[s]]) for s in src} for t, src in sources_of.items()}
  if how != "rrf":
    raise ValueError(f"combine={how!r}: use one of {COMBINE} or a component name, e.g. "
                     f"{sorted(per_component)[:3]}")
  out = {}
  for t, src in sources_of.items():
    cols = [index[s] for s in src]
    fused = np.zeros(len(src))
    for m in per_component.values():
      fused += 1.0 / (RRF_K + _ranks(np.asarray(m)[index[t], cols]))
    out[t] = {s: float(v) for s, v in zip(src, fused)}
  return out
