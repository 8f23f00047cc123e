"""Task-by-task cosine similarity of embeddings: matrix CSV and a heatmap with the tasks clustered.

Why clustered: related tasks then sit in visible blocks (average-linkage on 1 - cosine), which is
what a reader of the figure looks for; the CSV keeps the input order.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np


def cosine_matrix(embeddings: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
  """[T, ...] embeddings (flattened per task) -> [T, T] cosine similarities; with `columns` ([T, ...], e.g.
  the tasks embedded as sources while the rows are targets embedded from their own regime) rows x columns."""
  flat = np.asarray(embeddings, np.float64).reshape(len(embeddings), -1)
  cols = flat if columns is None else np.asarray(columns, np.float64).reshape(len(columns), -1)
  for which in (flat, cols):
    norms = np.linalg.norm(which, axis=1)
    if np.any(norms == 0):
      raise ValueError(f"task embedding {int(np.argmin(norms))} is all zeros: no cosine similarity; "
                       "check that the task has training examples")
  unit = lambda x: x / np.linalg.norm(x, axis=1)[:, None]
  return np.clip(unit(flat) @ unit(cols).T, -1.0, 1.0)


def cluster_order(sim: np.ndarray) -> list[int]:
  """Leaf order of an average-linkage clustering on 1 - similarity (input order for T <= 2)."""
  if len(sim) <= 2:
    return list(range(len(sim)))
  from scipy.cluster import hierarchy
  from scipy.spatial.distance import squareform
  dist = np.clip(1.0 - (sim + sim.T) / 2.0, 0.0, None)
  np.fill_diagonal(dist, 0.0)
  return [int(i) for i in hierarchy.leaves_list(hierarchy.linkage(squareform(dist, checks=False), "average"))]


def write_csv(path: pathlib.Path, names: Sequence[str], sim: np.ndarray) -> None:
  lines = ["task," + ",".join(names)] + [f"{n}," + ",".join(f"{v:.6f}" for v in row) for n, row in zip(names, sim)]
  pathlib.Path(path).write_text("\n".join(lines) + "\n")


def read_csv(path: pathlib.Path) -> tuple[list[str], np.ndarray]:
  lines = pathlib.Path(path).read_text().strip().splitlines()
  names = lines[0].split(",")[1:]
  return names, np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])


def heatmap(path: pathlib.Path, names: Sequence[str], sim: np.ndarray, title: str,
            label: str = "cosine similarity") -> pathlib.Path:
  """The matrix drawn with rows/columns in cluster order, values written in the cells."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  order = cluster_order(sim)
  shown = sim[np.ix_(order, order)]
  labels = [names[i] for i in order]
  size = 1.2 + 0.75 * len(names)
  fig, ax = plt.subplots(figsize=(size + 1.5, size))
  off = shown[~np.eye(len(shown), dtype=bool)]
  lo, hi = (float(off.min()), float(off.max())) if off.size else (0.0, 1.0)
  image = ax.imshow(shown, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-6)
  ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
  ax.set_yticks(range(len(labels)), labels)
  for i in range(len(labels)):
    for j in range(len(labels)):
      ax.text(j, i, f"{shown[i, j]:.2f}", ha="center", va="center", fontsize=8,
              color="white" if shown[i, j] < (lo + hi) / 2 else "black")
  fig.colorbar(image, ax=ax, label=label + " (off-diagonal range)")
  ax.set_title(title)
  fig.tight_layout()
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
