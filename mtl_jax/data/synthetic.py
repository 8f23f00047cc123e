r"""Synthetic task-relatedness benchmark (pure numpy).

A seeded generator of ``T`` text-classification tasks whose labels are
task-specific functions of one shared latent, with a single knob
``relatedness`` ``r`` in ``[0, 1]``: ``r = 1`` gives every task the identical
labelling function, ``r = 0`` gives independent ones. It is meant to show when
hard parameter sharing wins (high ``r``) and when soft / sluice sharing wins
(low ``r``).

Design
------
Let ``V = vocab_size``, ``D = latent_dim``, ``K = num_classes``.

1. **Word embedding.** ``E ~ N(0, 1)^{V x D}`` is drawn once from the seed.
   It is centred and ZCA-whitened over the vocabulary,
   ``E_w = (E - mean_v E) C^{-1/2}`` with ``C = cov_v(E)`` (population
   covariance over the ``V`` rows; needs ``V > D``), so a uniformly drawn word
   has ``E_w[w]`` with mean ``0`` and covariance exactly ``I_D``.

2. **Inputs.** An example is a token sequence ``w_1 .. w_L`` with
   ``L ~ Uniform{min_len .. max_len}`` and ``w_i ~ Uniform{0 .. V-1}`` i.i.d.
   Its latent is the standardised mean embedding

   .. math::  x = \sqrt{L}\,\frac{1}{L}\sum_{i=1}^{L} E_w[w_i]
              = \frac{1}{\sqrt{L}}\sum_{i=1}^{L} E_w[w_i],

   which has mean ``0`` and covariance exactly ``I_D`` for every ``L``
   (and is close to Gaussian by the CLT). Every task draws its *own*
   sequences from this same distribution.

3. **Labelling functions.** With ``W_shared, W_t^own ~ N(0, 1)^{K x D}``
   (independent; ``W_t^own`` depends only on ``(seed, t)``, not on ``r`` or
   ``T``)

   .. math::  W_t = \sqrt{r}\,W_{shared} + \sqrt{1-r}\,W_t^{own},

   so every ``W_t`` is ``N(0, 1)^{K x D}`` whatever ``r`` is, and
   ``corr(W_i, W_j) = r`` entrywise for ``i != j``. The label is

   .. math::  y_t(x) = \arg\max_k \,(W_t x - b_t)_k .

   For ``K = 2`` this is ``sign((w_{t,1} - w_{t,0}) \cdot x - \beta_t)``, a
   thresholded linear function; for isotropic Gaussian ``x`` and zero
   threshold, two tasks agree with probability ``1 - \theta_{ij}/\pi`` where
   ``\theta_{ij}`` is the angle between their difference vectors
   (``cos \theta_{ij} \approx r``).

4. **Class balance.** The biases ``b_t`` are calibrated on a large seeded
   sample (``CALIBRATION_SAMPLES`` inputs, the same sample for every task) of
   the shared input distribution: for ``K = 2`` the threshold is the sample
   median of the score margin (exactly balanced on that sample); for ``K > 2``
   a fixed number of deterministic bias-adjustment steps drives every class
   frequency towards ``1/K``. Because the calibration sample is shared and
   ``W_t`` is bit-identical across tasks when ``r = 1``, ``r = 1`` gives
   bit-identical labellings (agreement exactly ``1.0``).

Determinism and seeding
-----------------------
Every random stream uses ``numpy.random.default_rng`` seeded from a
fixed-length 4-tuple ``(seed, domain, a, b)`` (fixed length because
``SeedSequence`` maps ``(1, 2)`` and ``(1, 2, 0)`` to the same stream). The
examples of ``generate(config, t, split)`` come from
``(seed, _DOMAIN_EXAMPLES, t, split_code)`` and so depend only on
``(config, t, split)``; in particular a task's *inputs* do not depend on
``relatedness`` or ``num_tasks`` (changing ``r`` only changes the labels).
Splits are disjoint: validation rejects any token sequence drawn in train,
and test rejects any drawn in train or validation.

Examples are ``{'text': 'w12 w5 w190 ...', 'label': int, 'token_ids': [...]}``;
words are named ``w<id>`` so the text can go through any text vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = [
    "SyntheticConfig",
    "SPLITS",
    "STANDARD_GRID",
    "CALIBRATION_SAMPLES",
    "generate",
    "labels_for_token_ids",
    "label_agreement",
    "mean_offdiagonal",
    "expected_agreement_random",
    "mixture_name",
    "task_name",
    "task_names",
    "parse_task_name",
    "word",
]

SPLITS: Tuple[str, ...] = ("train", "validation", "test")
_SPLIT_CODES: Dict[str, int] = {s: i for i, s in enumerate(SPLITS)}

STANDARD_GRID = {
    "relatedness": (0.0, 0.25, 0.5, 0.75, 1.0),
    "num_tasks": (2, 8, 32),
}

# The 100+-task mixture (tasks/synthetic_many.py): 128 tasks in families of 16, small splits.
MANY_TASKS = 128
FAMILY_SIZE = 16


def family_of(task_index: int) -> str:
    """The family of a task of the many-task mixture: consecutive blocks of FAMILY_SIZE."""
    return f"family{task_index // FAMILY_SIZE}"


# Size of the shared seeded sample used to calibrate class balance.
CALIBRATION_SAMPLES = 20000
# Bias-adjustment steps for num_classes > 2.
_CALIBRATION_STEPS = 300

# Stream domains (second element of every seed tuple).
_DOMAIN_EMBEDDING = 1
_DOMAIN_SHARED = 2
_DOMAIN_OWN = 3
_DOMAIN_CALIBRATION = 4
_DOMAIN_EXAMPLES = 5
_DOMAIN_AGREEMENT = 6


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Configuration of one synthetic benchmark (a mixture of ``num_tasks`` tasks)."""

    num_tasks: int
    relatedness: float
    num_classes: int = 2
    vocab_size: int = 200
    min_len: int = 8
    max_len: int = 24
    latent_dim: int = 16
    train_examples: int = 2000
    validation_examples: int = 500
    test_examples: int = 500
    seed: int = 0

    def __post_init__(self):
        for name in ("num_tasks", "num_classes", "vocab_size", "min_len", "max_len",
                     "latent_dim", "train_examples", "validation_examples",
                     "test_examples", "seed"):
            value = getattr(self, name)
            if not _is_int(value):
                raise ValueError(f"{name}={value!r} must be an int")
        r = self.relatedness
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not (0.0 <= float(r) <= 1.0):
            raise ValueError(f"relatedness={r!r} must be a real number in [0, 1]")
        if self.num_tasks < 1:
            raise ValueError(f"num_tasks={self.num_tasks} must be >= 1")
        if self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes} must be >= 2")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim={self.latent_dim} must be >= 1")
        if self.vocab_size <= self.latent_dim:
            raise ValueError(
                f"vocab_size={self.vocab_size} must be > latent_dim={self.latent_dim} "
                "(needed to whiten the embedding)")
        if self.min_len < 1:
            raise ValueError(f"min_len={self.min_len} must be >= 1")
        if self.min_len > self.max_len:
            raise ValueError(f"min_len={self.min_len} must be <= max_len={self.max_len}")
        for name in ("train_examples", "validation_examples", "test_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.seed < 0:
            raise ValueError(f"seed={self.seed} must be >= 0")
        total = self.train_examples + self.validation_examples + self.test_examples
        capacity = 0
        for length in range(self.min_len, self.max_len + 1):
            capacity += self.vocab_size ** length
            if capacity >= total:
                break
        if capacity < total:
            raise ValueError(
                f"only {capacity} distinct sequences exist for vocab_size={self.vocab_size}, "
                f"len {self.min_len}..{self.max_len}; need >= {total} for disjoint splits")

    def num_examples(self, split: str) -> int:
        """Number of examples per task in ``split``."""
        _check_split(split)
        return {"train": self.train_examples, "validation": self.validation_examples,
                "test": self.test_examples}[split]

    @property
    def mixture_name(self) -> str:
        return mixture_name(self.relatedness, self.num_tasks)

    def task_name(self, task_index: int) -> str:
        return task_name(self.relatedness, self.num_tasks, task_index)


# --------------------------------------------------------------------------- naming


def _check_relatedness(relatedness) -> float:
    if isinstance(relatedness, bool) or not isinstance(relatedness, numbers.Real) \
            or not (0.0 <= float(relatedness) <= 1.0):
        raise ValueError(f"relatedness={relatedness!r} must be a real number in [0, 1]")
    return float(relatedness)


def _r_code(relatedness) -> int:
    # round() rather than int(): int(100 * 0.29) == 28. Identical on STANDARD_GRID.
    return int(round(100 * _check_relatedness(relatedness)))


def mixture_name(relatedness: float, num_tasks: int) -> str:
    """``'synthetic_r{100r}_t{T}'``, e.g. ``mixture_name(0.25, 8) == 'synthetic_r25_t8'``."""
    if not _is_int(num_tasks) or num_tasks < 1:
        raise ValueError(f"num_tasks={num_tasks!r} must be an int >= 1")
    return f"synthetic_r{_r_code(relatedness)}_t{num_tasks}"


def task_name(relatedness: float, num_tasks: int, task_index: int) -> str:
    """``'synthetic_r{100r}_t{T}_task{t}'``."""
    base = mixture_name(relatedness, num_tasks)
    if not _is_int(task_index) or not 0 <= task_index < num_tasks:
        raise ValueError(f"task_index={task_index!r} must be an int in [0, {num_tasks})")
    return f"{base}_task{task_index}"


def task_names(relatedness: float, num_tasks: int) -> List[str]:
    """All task names of a mixture, in task order."""
    return [task_name(relatedness, num_tasks, t) for t in range(num_tasks)]


_TASK_NAME_RE = re.compile(r"^synthetic_r(\d+)_t(\d+)(?:_task(\d+))?$")


def parse_task_name(name: str) -> Tuple[float, int, int | None]:
    """Inverse of ``task_name`` / ``mixture_name``: ``(relatedness, num_tasks, task_index|None)``."""
    m = _TASK_NAME_RE.match(name)
    if not m:
        raise ValueError(f"name={name!r} is not of the form 'synthetic_r<R>_t<T>[_task<t>]'")
    r, num_tasks = int(m.group(1)) / 100.0, int(m.group(2))
    task = None if m.group(3) is None else int(m.group(3))
    if r > 1.0 or num_tasks < 1 or (task is not None and task >= num_tasks):
        raise ValueError(f"name={name!r} has out-of-range fields (r in [0,100], t < T)")
    return r, num_tasks, task


def word(token_id: int) -> str:
    """The text form of a token id: ``'w<id>'``."""
    return f"w{int(token_id)}"


# --------------------------------------------------------------------------- model


def _rng(seed: int, domain: int, a: int = 0, b: int = 0) -> np.random.Generator:
    return np.random.default_rng((int(seed), int(domain), int(a), int(b)))


def _check_split(split: str) -> int:
    if split not in _SPLIT_CODES:
        raise ValueError(f"split={split!r} must be one of {SPLITS}")
    return _SPLIT_CODES[split]


def _check_task(config: SyntheticConfig, task_index: int) -> None:
    if not _is_int(task_index) or not 0 <= task_index < config.num_tasks:
        raise ValueError(f"task_index={task_index!r} must be an int in [0, {config.num_tasks})")


@functools.lru_cache(maxsize=64)
def _embedding(seed: int, vocab_size: int, latent_dim: int) -> np.ndarray:
    e = _rng(seed, _DOMAIN_EMBEDDING).standard_normal((vocab_size, latent_dim))
    e = e - e.mean(axis=0, keepdims=True)
    cov = e.T @ e / vocab_size
    evals, evecs = np.linalg.eigh(cov)
    inv_sqrt = (evecs / np.sqrt(evals)) @ evecs.T
    out = e @ inv_sqrt
    out.setflags(write=False)
    return out


def _draw_sequences(rng: np.random.Generator, n: int, config: SyntheticConfig,
                    forbidden=frozenset()) -> List[Tuple[int, ...]]:
    """``n`` token sequences from the shared input distribution, none in ``forbidden``."""
    out: List[Tuple[int, ...]] = []
    drawn = 0
    limit = 100 * n + 10000
    while len(out) < n:
        need = n - len(out)
        lengths = rng.integers(config.min_len, config.max_len + 1, size=need)
        flat = rng.integers(0, config.vocab_size, size=int(lengths.sum())).tolist()
        start = 0
        for length in lengths.tolist():
            seq = tuple(flat[start:start + length])
            start += length
            if seq not in forbidden:
                out.append(seq)
        drawn += need
        if drawn > limit and len(out) < n:
            raise RuntimeError(
                f"could not draw {n} sequences disjoint from earlier splits after {drawn} "
                "draws; increase vocab_size or max_len")
    return out


def _latents(config: SyntheticConfig, seqs: Sequence[Sequence[int]]) -> np.ndarray:
    """Standardised mean embeddings, shape ``(len(seqs), latent_dim)``."""
    emb = _embedding(config.seed, config.vocab_size, config.latent_dim)
    n = len(seqs)
    if n == 0:
        return np.zeros((0, config.latent_dim))
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    if np.any(lengths < 1):
        raise ValueError("every token sequence must have at least one token")
    flat = np.fromiter((tok for s in seqs for tok in s), dtype=np.int64, count=int(lengths.sum()))
    if flat.min() < 0 or flat.max() >= config.vocab_size:
        raise ValueError(f"token ids must be in [0, {config.vocab_size})")
    segment = np.repeat(np.arange(n), lengths)
    vecs = emb[flat]
    x = np.stack([np.bincount(segment, weights=vecs[:, d], minlength=n)
                  for d in range(config.latent_dim)], axis=1)
    return x / np.sqrt(lengths)[:, None]


@dataclasses.dataclass(frozen=True)
class _Model:
    weights: np.ndarray  # (T, K, D)
    biases: np.ndarray   # (T, K)


def _sequence_key(config: SyntheticConfig) -> SyntheticConfig:
    # Inputs depend neither on relatedness, num_tasks nor num_classes.
    return dataclasses.replace(config, relatedness=0.0, num_tasks=1, num_classes=2)


def _model_key(config: SyntheticConfig) -> SyntheticConfig:
    # Example counts do not affect the labelling functions.
    return dataclasses.replace(config, train_examples=0, validation_examples=0, test_examples=0)


def _model(config: SyntheticConfig) -> _Model:
    return _build_model(_model_key(config))


@functools.lru_cache(maxsize=64)
def _build_model(config: SyntheticConfig) -> _Model:
    k, d, r = config.num_classes, config.latent_dim, float(config.relatedness)
    shared = _rng(config.seed, _DOMAIN_SHARED).standard_normal((k, d))
    weights = np.stack([
        math.sqrt(r) * shared
        + math.sqrt(1.0 - r) * _rng(config.seed, _DOMAIN_OWN, t).standard_normal((k, d))
        for t in range(config.num_tasks)
    ])
    calib = _calibration_latents(_sequence_key(config))
    biases = np.stack([_calibrate(calib @ weights[t].T) for t in range(config.num_tasks)])
    weights.setflags(write=False)
    biases.setflags(write=False)
    return _Model(weights=weights, biases=biases)


@functools.lru_cache(maxsize=16)
def _calibration_latents(config: SyntheticConfig) -> np.ndarray:
    # Shared by every task, relatedness and num_tasks of a given seed.
    x = _latents(config, _draw_sequences(_rng(config.seed, _DOMAIN_CALIBRATION),
                                         CALIBRATION_SAMPLES, config))
    x.setflags(write=False)
    return x


def _calibrate(scores: np.ndarray) -> np.ndarray:
    """Biases ``b`` making ``argmax(scores - b)`` roughly balanced over classes."""
    n, k = scores.shape
    b = np.zeros(k)
    if k == 2:
        b[1] = float(np.median(scores[:, 1] - scores[:, 0]))
        return b
    scale = float(scores.std())
    target = 1.0 / k
    for step in range(_CALIBRATION_STEPS):
        freq = np.bincount(np.argmax(scores - b, axis=1), minlength=k) / n
        lr = 2.0 * scale / (1.0 + step / 50.0)
        b = b + lr * (freq - target)
        b = b - b.mean()
    return b


def _labels(config: SyntheticConfig, task_index: int, x: np.ndarray) -> np.ndarray:
    model = _model(config)
    return np.argmax(x @ model.weights[task_index].T - model.biases[task_index], axis=1)


def labels_for_token_ids(config: SyntheticConfig, task_index: int,
                         token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Task ``task_index``'s labels for arbitrary token sequences (int array)."""
    _check_task(config, task_index)
    return _labels(config, task_index, _latents(config, token_ids)).astype(np.int64)


# --------------------------------------------------------------------------- public API


@functools.lru_cache(maxsize=256)
def _split_sequences(config: SyntheticConfig, task_index: int,
                     split_code: int) -> Tuple[Tuple[int, ...], ...]:
    forbidden = set()
    for earlier in range(split_code):
        forbidden.update(_split_sequences(config, task_index, earlier))
    n = config.num_examples(SPLITS[split_code])
    rng = _rng(config.seed, _DOMAIN_EXAMPLES, task_index, split_code)
    return tuple(_draw_sequences(rng, n, config, forbidden))




def generate(config: SyntheticConfig, task_index: int, split: str) -> List[Dict]:
    """Examples ``{'text', 'label', 'token_ids'}`` of one task and split.

    Deterministic: depends only on ``(config, task_index, split)``; fresh
    dicts/lists are returned on every call.
    """
    split_code = _check_split(split)
    _check_task(config, task_index)
    seqs = _split_sequences(_sequence_key(config), task_index, split_code)
    labels = _labels(config, task_index, _latents(config, seqs)).tolist()
    return [{"text": " ".join(word(tok) for tok in seq), "label": int(label),
             "token_ids": list(seq)}
            for seq, label in zip(seqs, labels)]


def label_agreement(config: SyntheticConfig, num_samples: int = 2000) -> np.ndarray:
    """``(T, T)`` matrix: fraction of a shared input sample on which tasks i, j agree.

    The sample (``num_samples`` sequences from the shared input distribution)
    is seeded from ``config.seed`` and is the same for every task.
    """
    if not _is_int(num_samples) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r} must be an int >= 1")
    x = _latents(config, _draw_sequences(_rng(config.seed, _DOMAIN_AGREEMENT, num_samples),
                                         num_samples, config))
    labels = np.stack([_labels(config, t, x) for t in range(config.num_tasks)])
    return (labels[:, None, :] == labels[None, :, :]).mean(axis=2)


def mean_offdiagonal(matrix: np.ndarray) -> float:
    """Mean of the off-diagonal entries of a square matrix (nan for 1x1)."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    if n < 2:
        return float("nan")
    return float((m.sum() - np.trace(m)) / (n * (n - 1)))


def expected_agreement_random(num_classes: int) -> float:
    """Agreement of two independent balanced labellings: ``1 / num_classes``."""
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} must be an int >= 2")
    return 1.0 / num_classes
