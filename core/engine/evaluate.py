"""Metrics and paired significance tests for comparing prompting methods on the same test examples.

Plain numpy for accuracy / macro-F1 / confusion (a few lines each, no sklearn dependency), statsmodels for
McNemar's test, and a multinomial paired bootstrap (see ``paired_bootstrap`` for why not ``scipy.stats.bootstrap``).
Every function accepts lists, numpy arrays or torch tensors (on any device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from statsmodels.stats.contingency_tables import mcnemar

EXACT_MCNEMAR_BELOW = 25  # discordant pairs; below this the chi-square approximation is poor


@dataclass
class Evaluation:
    """Scores of one method on one test set. ``confusion[i][j]`` counts gold label i predicted as j."""

    accuracy: float
    macro_f1: float
    confusion: list[list[int]]
    n: int
    predictions: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


def _array(values: Any, dtype: type | None = None) -> np.ndarray:
    """numpy view of a list, array or (CPU/GPU, grad-tracking) tensor."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy() if values.is_floating_point() else values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def _labels(pred: Any, gold: Any, n_labels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validated 1-D int arrays of equal, non-zero length with labels in [0, n_labels)."""
    p, g = _array(pred, np.int64).ravel(), _array(gold, np.int64).ravel()
    if len(p) != len(g):
        raise ValueError(f"{len(p)} predictions but {len(g)} gold labels")
    if len(g) == 0:
        raise ValueError("no examples to evaluate")
    if n_labels is not None and (min(p.min(), g.min()) < 0 or max(p.max(), g.max()) >= n_labels):
        raise ValueError(
            f"labels must lie in [0, {n_labels}); got values from {min(p.min(), g.min())} to {max(p.max(), g.max())}"
        )
    return p, g


def accuracy(pred: Any, gold: Any) -> float:
    p, g = _labels(pred, gold)
    return float(np.mean(p == g))


def confusion_matrix(pred: Any, gold: Any, n_labels: int) -> list[list[int]]:
    """Counts with rows = gold label, columns = predicted label (the sklearn convention)."""
    p, g = _labels(pred, gold, n_labels)
    counts = np.bincount(g * n_labels + p, minlength=n_labels * n_labels)
    return counts.reshape(n_labels, n_labels).tolist()


def macro_f1(pred: Any, gold: Any, n_labels: int) -> float:
    """Unweighted mean of per-class F1 over all ``n_labels`` classes.

    A class with no true positives scores 0 (sklearn's ``zero_division=0``), so a method that never predicts a
    class is penalised for it rather than having the class silently dropped.
    """
    cm = np.asarray(confusion_matrix(pred, gold, n_labels), dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def evaluate(scores: torch.Tensor | np.ndarray, labels: Sequence[int], n_labels: int) -> Evaluation:
    """Evaluate [n, n_labels] label scores (any monotone scale, e.g. log-probs) by their argmax."""
    s = _array(scores, np.float64)
    if s.ndim != 2 or s.shape[1] != n_labels:
        raise ValueError(f"scores must have shape [n, {n_labels}], got {list(s.shape)}")
    if np.isnan(s).any():
        raise ValueError(f"scores contain NaN for {int(np.isnan(s).any(axis=1).sum())} of {len(s)} examples")
    pred = s.argmax(axis=1)
    return Evaluation(
        accuracy=accuracy(pred, labels),
        macro_f1=macro_f1(pred, labels, n_labels),
        confusion=confusion_matrix(pred, labels, n_labels),
        n=len(pred),
        predictions=pred.tolist(),
    )


def expected_calibration_error(probs: Any, gold: Any, n_bins: int = 10) -> float:
    """ECE of [n, n_labels] probabilities: bin by confidence (max prob) into equal-width (lo, hi] bins, then
    sum |accuracy - mean confidence| weighted by each bin's share of examples."""
    p = _array(probs, np.float64)
    if p.ndim != 2 or np.isnan(p).any() or p.min() < 0 or p.max() > 1:
        raise ValueError(
            "probs must be an [n, n_labels] array of probabilities in [0, 1] (apply softmax to log-scores)"
        )
    pred, g = _labels(p.argmax(axis=1), gold, p.shape[1])
    confidence = p.max(axis=1)
    correct = (pred == g).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    gap = np.abs(np.bincount(bins, correct, n_bins) - np.bincount(bins, confidence, n_bins))  # per-bin sums
    return float(gap.sum() / len(g))


def mcnemar_test(pred_a: Any, pred_b: Any, gold: Any) -> dict:
    """McNemar's test on paired correctness: is one method right where the other is wrong more often than chance?

    Uses the exact binomial test when there are fewer than 25 discordant pairs, else chi-square with continuity
    correction. ``a_only`` / ``b_only`` count examples only A / only B got right.
    """
    a, g = _labels(pred_a, gold)
    b, _ = _labels(pred_b, gold)
    right_a, right_b = a == g, b == g
    table = [
        [int(np.sum(right_a & right_b)), int(np.sum(right_a & ~right_b))],
        [int(np.sum(~right_a & right_b)), int(np.sum(~right_a & ~right_b))],
    ]
    a_only, b_only = table[0][1], table[1][0]
    exact = a_only + b_only < EXACT_MCNEMAR_BELOW
    result = mcnemar(table, exact=exact, correction=True)
    return {
        "statistic": float(result.statistic),
        "p_value": float(result.pvalue),
        "a_only": a_only,
        "b_only": b_only,
        "exact": exact,
    }


def paired_bootstrap(
    pred_a: Any, pred_b: Any, gold: Any, *, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict:
    """Paired bootstrap of the accuracy difference acc(A) - acc(B): percentile CI and a two-sided p-value.

    Vectorised numpy, not ``scipy.stats.bootstrap``: the statistic is the mean of per-example differences
    d_i = right_a - right_b in {-1, 0, 1}, so resampling examples with replacement is exactly a multinomial draw
    of the three counts. That costs O(n_resamples) memory instead of an [n_resamples, n] index array, yields the
    p-value from the same resamples (scipy gives only a CI), and stays defined when all d_i are equal (scipy's
    default BCa interval degenerates to NaN there, e.g. for identical predictions).

    p-value: share of resampled differences at least |diff| away from the observed one (the bootstrap
    distribution shifted to the null of no difference), with the +1 correction so it is never 0.
    """
    a, g = _labels(pred_a, gold)
    b, _ = _labels(pred_b, gold)
    d = (a == g).astype(np.int64) - (b == g).astype(np.int64)
    n = len(d)
    diff = float(d.mean())
    freqs = np.array([np.mean(d == -1), np.mean(d == 0), np.mean(d == 1)])
    counts = np.random.default_rng(seed).multinomial(n, freqs, size=n_resamples)  # (B, 3)
    diffs = (counts[:, 2] - counts[:, 0]) / n
    alpha = 1.0 - confidence
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    extreme = np.sum(np.abs(diffs - diff) >= abs(diff) - 1e-12)
    return {
        "diff": diff,
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": float((extreme + 1) / (n_resamples + 1)),
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) across seeds; std is 0.0 for a single value."""
    v = _array(values, np.float64).ravel()
    if len(v) == 0:
        raise ValueError("mean_std needs at least one value")
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return float(v.mean()), std
