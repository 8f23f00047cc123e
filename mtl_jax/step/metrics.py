"""Evaluation metrics in seqio ``metric_fns`` style: ``fn(targets, predictions) -> dict``.

Conventions, and why:

* Every function returns ``dict[str, float]`` of plain Python floats, so results
  can be logged / JSON-dumped / averaged without numpy scalars leaking through.
* Accuracy and F1 are fractions in [0, 1] (not percent) and correlations are in
  [-1, 1], so scores from different tasks share one scale.
* Standard computations are delegated to scikit-learn / scipy; only BIO span
  extraction (conlleval semantics) is written here.
* Degenerate inputs never yield a silent NaN: empty inputs, length mismatches and
  non-finite regression values raise ``ValueError``; a constant vector (which
  makes a correlation undefined) scores 0.0 correlation, i.e. "no linear/rank
  relationship", matching sklearn's convention for MCC; F1 with no predicted or
  no gold positives is 0.0 (sklearn ``zero_division=0`` / conlleval).
* Tagging metrics take per-sentence lists of tag strings (``'B-per'``, ``'I-per'``,
  ``'O'``) with padding already removed. Spans follow conlleval: an ``I-X`` that
  does not continue an open ``X`` span starts a new span; span P/R/F1 are
  micro-averaged over all sentences (exact match on type, start, end).
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
from scipy import stats
from sklearn import metrics as skm

__all__ = [
    "accuracy", "f1_macro", "f1_binary", "mcc", "pearson_spearman", "mse",
    "token_accuracy", "span_f1", "bio_spans", "PRIMARY_METRIC", "HEADLINE_ORDER",
    "headline",
]


def _check(targets, predictions) -> None:
    if len(targets) != len(predictions):
        raise ValueError(
            f"targets and predictions differ in length: {len(targets)} targets "
            f"vs {len(predictions)} predictions")
    if len(targets) == 0:
        raise ValueError("targets and predictions are empty; cannot compute a metric")


def _check_regression(targets, predictions) -> tuple[np.ndarray, np.ndarray]:
    _check(targets, predictions)
    t = np.asarray(targets, dtype=np.float64).reshape(-1)
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ValueError("targets/predictions contain NaN or inf; cannot compute a metric")
    return t, p


# --------------------------------------------------------------- classification

def accuracy(targets, predictions) -> dict[str, float]:
    """Fraction of exact matches."""
    _check(targets, predictions)
    return {"accuracy": float(skm.accuracy_score(targets, predictions))}


def f1_macro(targets, predictions) -> dict[str, float]:
    """Unweighted mean of per-class F1 over classes seen in targets or predictions."""
    _check(targets, predictions)
    return {"f1_macro": float(skm.f1_score(targets, predictions, average="macro",
                                           zero_division=0))}


def f1_binary(targets, predictions) -> dict[str, float]:
    """F1 of the positive class 1 (GLUE MRPC/QQP). 0.0 if class 1 never occurs."""
    _check(targets, predictions)
    # labels=[1] + micro == F1 of class 1, and does not raise when 1 is absent.
    return {"f1": float(skm.f1_score(targets, predictions, labels=[1],
                                     average="micro", zero_division=0))}


def mcc(targets, predictions) -> dict[str, float]:
    """Matthews correlation (GLUE CoLA). 0.0 when undefined (e.g. constant predictions)."""
    _check(targets, predictions)
    with warnings.catch_warnings():  # single-label inputs warn; result is 0.0
        warnings.simplefilter("ignore")
        return {"mcc": float(skm.matthews_corrcoef(targets, predictions))}


# ------------------------------------------------------------------- regression

def pearson_spearman(targets, predictions) -> dict[str, float]:
    """Pearson and Spearman correlations (GLUE STS-B).

    If either vector is constant (including a single example) the correlations
    are undefined; both are reported as 0.0 instead of NaN.
    """
    t, p = _check_regression(targets, predictions)
    if np.ptp(t) == 0 or np.ptp(p) == 0:
        return {"pearson": 0.0, "spearman": 0.0}
    return {"pearson": float(stats.pearsonr(t, p)[0]),
            "spearman": float(stats.spearmanr(t, p)[0])}


def mse(targets, predictions) -> dict[str, float]:
    """Mean squared error (lower is better; never used as a headline score)."""
    t, p = _check_regression(targets, predictions)
    return {"mse": float(skm.mean_squared_error(t, p))}


# ---------------------------------------------------------------------- tagging

def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Spans ``(type, start, end)`` (end exclusive) from a BIO tag sequence.

    conlleval semantics: ``B-X`` always opens a span; ``I-X`` continues an open
    ``X`` span, otherwise (after ``O`` or a different type) it opens a new one.
    Raises ValueError for a tag that is not ``O``, ``B-*`` or ``I-*``.
    """
    spans: list[tuple[str, int, int]] = []
    cur_type, cur_start = None, 0
    for i, tag in enumerate(list(tags) + ["O"]):  # sentinel closes the last span
        if isinstance(tag, bytes):
            tag = tag.decode("utf-8")
        if tag == "O":
            prefix, typ = "O", None
        elif len(tag) > 2 and tag[:2] in ("B-", "I-"):
            prefix, typ = tag[0], tag[2:]
        else:
            raise ValueError(f"invalid BIO tag {tag!r} at position {i}; "
                             "expected 'O', 'B-<type>' or 'I-<type>'")
        continues = prefix == "I" and typ == cur_type
        if cur_type is not None and not continues:
            spans.append((cur_type, cur_start, i))
            cur_type = None
        if prefix != "O" and not continues:
            cur_type, cur_start = typ, i
    return spans


def _check_tagging(targets, predictions) -> None:
    _check(targets, predictions)
    for i, (t, p) in enumerate(zip(targets, predictions)):
        if isinstance(t, (str, bytes)) or isinstance(p, (str, bytes)):
            raise ValueError(f"sentence {i} is a single string; expected a list of "
                             "per-sentence tag sequences")
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} target tags vs "
                             f"{len(p)} predicted tags")


def token_accuracy(targets, predictions) -> dict[str, float]:
    """Fraction of tokens (over all sentences) whose tag is predicted exactly."""
    _check_tagging(targets, predictions)
    flat_t = [tag for sent in targets for tag in sent]
    flat_p = [tag for sent in predictions for tag in sent]
    if not flat_t:
        raise ValueError("all sentences are empty; cannot compute token accuracy")
    return {"token_accuracy": float(skm.accuracy_score(flat_t, flat_p))}


def span_f1(targets, predictions) -> dict[str, float]:
    """Exact-match span precision/recall/F1, micro-averaged over all sentences.

    Precision (recall) is 0.0 when there are no predicted (gold) spans, as in
    conlleval, so a sentence set with no entities at all scores 0.0, not NaN.
    """
    _check_tagging(targets, predictions)
    n_gold = n_pred = n_correct = 0
    for t, p in zip(targets, predictions):
        gold, pred = set(bio_spans(t)), set(bio_spans(p))
        n_gold += len(gold)
        n_pred += len(pred)
        n_correct += len(gold & pred)
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"span_precision": float(precision), "span_recall": float(recall),
            "span_f1": float(f1)}


# --------------------------------------------------------------------- headline

# Metric function name -> result key used as the task's headline score. mse maps
# to None: lower is better, so it cannot be averaged with higher-is-better scores.
PRIMARY_METRIC: dict[str, str | None] = {
    "accuracy": "accuracy",
    "f1_macro": "f1_macro",
    "f1_binary": "f1",
    "mcc": "mcc",
    "pearson_spearman": "pearson",
    "mse": None,
    "token_accuracy": "token_accuracy",
    "span_f1": "span_f1",
}

# Priority order for ``headline``: task-standard headline metrics first
# (NER -> span F1, CoLA -> MCC, STS-B -> Pearson), then macro-F1 (imbalanced
# classification), accuracy (GLUE default, also reported first for MRPC/QQP),
# binary F1, Spearman, and finally token accuracy (a weak proxy for tagging).
HEADLINE_ORDER: tuple[str, ...] = (
    "span_f1", "mcc", "pearson", "f1_macro", "accuracy", "f1", "spearman",
    "token_accuracy",
)


def headline(results: Mapping[str, float]) -> float:
    """The single higher-is-better score for a task's merged metric results."""
    for key in HEADLINE_ORDER:
        if key in results:
            return float(results[key])
    raise ValueError(f"no headline metric in results (keys: {sorted(results)}); "
                     f"expected one of {list(HEADLINE_ORDER)}")
