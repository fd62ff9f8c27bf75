"""Bootstrap: percentile CIs of one model's metrics, and paired differences between two models.

Each resample draws the split's participants with replacement, so its number of cases varies as it would in a new
sample of the population. A resample that kept the case count (cases and controls drawn separately) would hide that
variation: on calibrated risks and demo-sized splits its 95% Brier interval held the true expected Brier score in
15% of simulated test sets (this one: 94%). O/E's interval is analytic (cadft.eval.metrics.oe_ratio_interval).
A resample is a matrix of draw counts per participant, so metrics are weighted sums over sorted scores instead of
copied arrays; a paired comparison gives both models the same count matrices, i.e. the same resampled people.
Under task.censoring=ipcw each drawn participant counts with their IPCW weight (draws x weight).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CI_METRICS = ("auroc", "auprc", "brier", "sensitivity", "specificity")
BOOTSTRAP_CELLS = 2_000_000  # resample x participant cells per chunk: bounds memory on UKB-sized splits


def resample_counts(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, n): how often each of n items is drawn in each of `size` resamples with replacement."""
    draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
    return np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)


def draws(n_pos: int, n_neg: int, resamples: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of (case counts, control counts) of resamples of all n_pos + n_neg participants, in the order the
    participants appear within each class."""
    chunk = max(1, BOOTSTRAP_CELLS // (n_pos + n_neg))
    for start in range(0, resamples, chunk):
        counts = resample_counts(n_pos + n_neg, min(chunk, resamples - start), rng)
        yield counts[:, :n_pos], counts[:, n_pos:]


class ResampledMetrics:
    """metrics(w_pos, w_neg) -> (size, len(CI_METRICS)) for one model's scores; what does not depend on the draw
    is computed once. Counts are given in the class order of `label` and permuted to sorted scores here; `weight`
    (IPCW) multiplies them."""

    def __init__(self, label: np.ndarray, prob: np.ndarray, threshold: float, weight: np.ndarray | None = None):
        pos, neg = prob[label == 1], prob[label == 0]
        self.pos_order, self.neg_order = np.argsort(pos, kind="stable"), np.argsort(neg, kind="stable")
        self.weights = (
            None if weight is None else (weight[label == 1][self.pos_order], weight[label == 0][self.neg_order])
        )
        positives, negatives = pos[self.pos_order], neg[self.neg_order]
        self.n_pos, self.n_neg = len(positives), len(negatives)
        # AUROC: for each positive, the drawn negatives below it (ties count half), from cumulative counts over sorted
        # negatives.
        self.below, self.not_above = (
            np.searchsorted(negatives, positives, "left"),
            np.searchsorted(negatives, positives, "right"),
        )
        # AUPRC = mean over drawn positives of the precision at their score (all tied scores counted), as sklearn's
        # step sum.
        scores = np.concatenate([positives, negatives])
        self.order = np.argsort(-scores, kind="stable")
        self.is_case = (self.order < self.n_pos).astype(np.float64)
        position = np.arange(len(scores))
        last_of_tie = np.r_[scores[self.order][1:] != scores[self.order][:-1], True]
        self.case_tie_end = np.minimum.accumulate(np.where(last_of_tie, position, len(scores))[::-1])[::-1][
            self.is_case == 1
        ]
        self.case_errors, self.control_errors = (1 - positives) ** 2, negatives**2
        self.detected, self.cleared = (
            (positives >= threshold).astype(np.float64),
            (negatives < threshold).astype(np.float64),
        )

    def __call__(self, w_pos: np.ndarray, w_neg: np.ndarray) -> np.ndarray:
        w_pos, w_neg = w_pos[:, self.pos_order], w_neg[:, self.neg_order]
        if self.weights is not None:
            w_pos, w_neg = w_pos * self.weights[0], w_neg * self.weights[1]
        size = len(w_pos)
        # Drawn cases and controls per resample; a resample without one class has no AUROC (nan, left out of the CI).
        n_pos, n_neg = w_pos.sum(axis=1).astype(np.float64), w_neg.sum(axis=1).astype(np.float64)
        n_pos[n_pos == 0], n_neg[n_neg == 0] = np.nan, np.nan
        cumulative = np.zeros((size, self.n_neg + 1))
        np.cumsum(w_neg, axis=1, out=cumulative[:, 1:])
        auroc = (w_pos * (cumulative[:, self.below] + cumulative[:, self.not_above]) / 2).sum(axis=1) / (n_pos * n_neg)
        weights = np.concatenate([w_pos, w_neg], axis=1)[:, self.order]
        true_pos, seen = np.cumsum(weights * self.is_case, axis=1), np.cumsum(weights, axis=1)
        precision = true_pos[:, self.case_tie_end] / np.maximum(seen[:, self.case_tie_end], 1)
        auprc = (weights[:, self.is_case == 1] * precision).sum(axis=1) / n_pos
        total = self.n_pos + self.n_neg if self.weights is None else w_pos.sum(axis=1) + w_neg.sum(axis=1)
        brier = (w_pos @ self.case_errors + w_neg @ self.control_errors) / total
        return np.column_stack([auroc, auprc, brier, w_pos @ self.detected / n_pos, w_neg @ self.cleared / n_neg])


def percentile_interval(stats: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - level) / 2
    low, high = np.nanquantile(stats, [tail, 1 - tail], axis=0)
    return low, high


def bootstrap_cis(
    label: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    *,
    resamples: int,
    level: float,
    rng: np.random.Generator,
    weight: np.ndarray | None = None,
) -> dict | None:
    """{metric: {low, high}} percentile CIs of CI_METRICS (the threshold held fixed); None without both classes."""
    if resamples == 0 or not 0 < label.sum() < len(label):
        return None
    metrics = ResampledMetrics(label, prob, threshold, weight)
    stats = np.concatenate(
        [metrics(w_pos, w_neg) for w_pos, w_neg in draws(metrics.n_pos, metrics.n_neg, resamples, rng)]
    )
    low, high = percentile_interval(stats, level)
    return {name: {"low": float(lo), "high": float(hi)} for name, lo, hi in zip(CI_METRICS, low, high)}


def paired_differences(
    label: np.ndarray,
    prob: np.ndarray,
    reference: np.ndarray,
    *,
    resamples: int,
    level: float,
    rng: np.random.Generator,
    weight: np.ndarray | None = None,
) -> dict:
    """prob's model minus the reference model on the same people: {delta_auroc, delta_brier} -> {value, low, high},
    each resample drawing the same participants for both."""
    mine, theirs = ResampledMetrics(label, prob, 0.5, weight), ResampledMetrics(label, reference, 0.5, weight)
    full_pos, full_neg = np.ones((1, mine.n_pos)), np.ones((1, mine.n_neg))
    point = mine(full_pos, full_neg)[0] - theirs(full_pos, full_neg)[0]
    columns = {"delta_auroc": CI_METRICS.index("auroc"), "delta_brier": CI_METRICS.index("brier")}
    result = {name: {"value": float(point[column]), "low": None, "high": None} for name, column in columns.items()}
    if resamples == 0 or not 0 < label.sum() < len(label):
        return result
    stats = np.concatenate(
        [mine(w_pos, w_neg) - theirs(w_pos, w_neg) for w_pos, w_neg in draws(mine.n_pos, mine.n_neg, resamples, rng)]
    )
    low, high = percentile_interval(stats, level)
    for name, column in columns.items():
        result[name] |= {"low": float(low[column]), "high": float(high[column])}
    return result
