r"""A catalogue of synthetic tasks with planted relations: the ground truth for source selection.

Why: a ranking method (TaskEmb, TextEmb, affinity, DataSize) can only be validated where the answer is
known. Here it is known by construction. 24 binary tasks (6 families x 4 members) share the input distribution
of mtl_jax/data/synthetic.py (whitened word embeddings, x = standardised mean embedding, x ~ N(0, I_D);
here V = 400 words, D = 48) and label y = [d_t . x > beta_t] (beta_t: the median, balanced classes) with

  d_s                                       one unit direction per super-family s (families 2s, 2s + 1)
  d_f = sqrt(b) d_s + sqrt(1-b) e_f         one per family f
  d_t = sqrt(a_t) d_f + sqrt(1-a_t) o_t     one per task t of family f, a_t = LOADINGS[member]

where d_s, e_f and o_t are 3 + 6 + 24 ORTHONORMAL directions (QR of a seeded Gaussian), so every d_t is a
unit vector and the PLANTED OVERLAP cos(d_i, d_j) is exact, not a sample correlation:
  sqrt(a_i a_j)        same family
  b sqrt(a_i a_j)      same super-family, other family
  0                    otherwise.
`planted_overlap` is the oracle a source ranking is scored against before any training. For x ~ N(0, I)
two tasks agree on a fraction 1 - arccos(rho)/pi of inputs (at zero thresholds), so the measured label
agreement orders the pairs as the overlap does (tests check it).

Sizes: training sets differ (SIZES, assigned by a fixed scramble that is uncorrelated with the loadings)
so DataSize is not right by construction; the limited-data regime is a transfer regime (e.g. n100).
Task names: syncat_f{family}_m{member}.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, List, Sequence

import numpy as np

from mtl_jax.data import synthetic as syn

FAMILIES = 6
MEMBERS = 4
LOADINGS = (0.9, 0.7, 0.5, 0.3)     # a_t of members 0..3
SUPER_SHARE = 0.3                    # b
SIZES = (200, 400, 800, 1600, 3200)  # training examples, scrambled over the tasks
EVAL_EXAMPLES = 200                  # validation and test examples per task
SEED = 0
_TASK_OFFSET = 1000                  # example streams distinct from the relatedness benchmark's tasks
VOCAB_SIZE = 400
LATENT_DIM = 48                      # >= 3 + 6 + 24 orthonormal directions
_DOMAIN_BASIS, _DOMAIN_AGREEMENT = 11, 14


def task_name(family: int, member: int) -> str:
  return f"syncat_f{family}_m{member}"


def task_names() -> List[str]:
  return [task_name(f, m) for f in range(FAMILIES) for m in range(MEMBERS)]


def parse(name: str) -> tuple[int, int]:
  """'syncat_f3_m1' -> (3, 1)."""
  try:
    f, m = name.removeprefix("syncat_f").split("_m")
    family, member = int(f), int(m)
  except ValueError:
    raise ValueError(f"{name!r} is not a catalogue task; names are syncat_f<0..{FAMILIES - 1}>_m<0..{MEMBERS - 1}>") \
        from None
  if not (0 <= family < FAMILIES and 0 <= member < MEMBERS) or not name.startswith("syncat_f"):
    raise ValueError(f"{name!r} is not a catalogue task; names are syncat_f<0..{FAMILIES - 1}>_m<0..{MEMBERS - 1}>")
  return family, member


def index(name: str) -> int:
  family, member = parse(name)
  return family * MEMBERS + member


def train_size(name: str) -> int:
  """A fixed scramble: size index = (3 * family + 2 * member) mod 5, so within a family the strongest
  loading is not the largest set, and across families every size occurs."""
  family, member = parse(name)
  return SIZES[(3 * family + 2 * member) % len(SIZES)]


def config(name: str) -> syn.SyntheticConfig:
  """The generator config of one task (its inputs; labels come from `weights`)."""
  return dataclasses.replace(_BASE, train_examples=train_size(name), validation_examples=EVAL_EXAMPLES,
                             test_examples=EVAL_EXAMPLES)


_BASE = syn.SyntheticConfig(num_tasks=1, relatedness=0.0, vocab_size=VOCAB_SIZE, latent_dim=LATENT_DIM, seed=SEED)


def planted_overlap(names: Sequence[str]) -> np.ndarray:
  """[T, T] entrywise correlation of the tasks' W (1 on the diagonal): the oracle's scores."""
  fam = [parse(n) for n in names]
  out = np.zeros((len(names), len(names)))
  for i, (fi, mi) in enumerate(fam):
    for j, (fj, mj) in enumerate(fam):
      if i == j:
        out[i, j] = 1.0
        continue
      share = math.sqrt(LOADINGS[mi] * LOADINGS[mj])
      out[i, j] = share if fi == fj else (SUPER_SHARE * share if fi // 2 == fj // 2 else 0.0)
  return out


@functools.lru_cache(maxsize=1)
def directions() -> np.ndarray:
  """[24, D] unit labelling directions d_t built as the module docstring says."""
  supers, families, tasks = FAMILIES // 2, FAMILIES, FAMILIES * MEMBERS
  q, _ = np.linalg.qr(syn._rng(SEED, _DOMAIN_BASIS).standard_normal((LATENT_DIM, supers + families + tasks)))
  d_s, e_f, o_t = q[:, :supers].T, q[:, supers:supers + families].T, q[:, supers + families:].T
  out = []
  for f in range(FAMILIES):
    d_f = math.sqrt(SUPER_SHARE) * d_s[f // 2] + math.sqrt(1 - SUPER_SHARE) * e_f[f]
    for m in range(MEMBERS):
      out.append(math.sqrt(LOADINGS[m]) * d_f + math.sqrt(1 - LOADINGS[m]) * o_t[f * MEMBERS + m])
  d = np.stack(out)
  d.setflags(write=False)
  return d


@functools.lru_cache(maxsize=1)
def thresholds() -> np.ndarray:
  """[24]: the median of d_t . x on synthetic.py's shared calibration sample (balanced classes)."""
  calib = syn._calibration_latents(syn._sequence_key(_BASE))
  return np.median(calib @ directions().T, axis=0)


def labels(name: str, latents: np.ndarray) -> np.ndarray:
  i = index(name)
  return (latents @ directions()[i] > thresholds()[i]).astype(np.int64)


def generate(name: str, split: str) -> List[Dict]:
  """Examples {'text', 'label'} of one task and split (deterministic; disjoint splits)."""
  cfg = config(name)
  seqs = syn._split_sequences(syn._sequence_key(cfg), _TASK_OFFSET + index(name), syn._check_split(split))
  ys = labels(name, syn._latents(cfg, seqs)).tolist()
  return [{"text": " ".join(syn.word(t) for t in seq), "label": int(y)} for seq, y in zip(seqs, ys)]


def label_agreement(names: Sequence[str], num_samples: int = 20000) -> np.ndarray:
  """[T, T] fraction of a shared input sample on which two tasks agree (the measured relation)."""
  x = syn._latents(_BASE, syn._draw_sequences(syn._rng(SEED, _DOMAIN_AGREEMENT, num_samples), num_samples, _BASE))
  ys = np.stack([labels(n, x) for n in names])
  return (ys[:, None, :] == ys[None, :, :]).mean(axis=2)


@dataclasses.dataclass(frozen=True)
class Grid:
  """The transfer grid of gin/experiments/taskemb_synthetic.gin: candidates are members 0 and 2, targets
  members 1 and 3, of families 0..4 (family 5 stays out: the 'all' mixture of select_vs_all has more)."""
  families: int = 5

  @property
  def sources(self) -> List[str]:
    return [task_name(f, m) for f in range(self.families) for m in (0, 2)]

  @property
  def targets(self) -> List[str]:
    return [task_name(f, m) for f in range(self.families) for m in (1, 3)]
