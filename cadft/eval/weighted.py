"""The IPCW-weighted forms of metrics.json's counts and calibration table (task.censoring=ipcw; cadft.data.ipcw), used
by cadft.eval.metrics: without weights it computes them as it always has."""

from __future__ import annotations

import numpy as np

from cadft.eval.survival import wilson_interval


def split_counts(label: np.ndarray, prob: np.ndarray, weight: np.ndarray | None) -> dict:
    """n, cases, prevalence and mean risk; IPCW-weighted (with the weighting's own keys) when there are weights."""
    n, cases = len(label), int(label.sum())
    if weight is None:
        mean_risk = float(prob.mean())
        return {"n": n, "cases": cases, "prevalence": cases / n, "mean_risk": mean_risk}
    return {
        "n": n,
        "cases": cases,
        "prevalence": float(np.average(label, weights=weight)),
        "mean_risk": float(np.average(prob, weights=weight)),
        "weighted": "ipcw",
        "participants_used": int((weight > 0).sum()),
        "effective_n": float(weight.sum() ** 2 / (weight**2).sum()),
    }


def weighted_decile_table(label: np.ndarray, prob: np.ndarray, bins: int, weight: np.ndarray) -> list[dict]:
    """decile_table's bins over the participants used (weight > 0): weighted rates, the Wilson interval on the bin's
    effective size (sum w)^2 / sum w^2, and the bin's total `weight`."""
    used = np.flatnonzero(weight > 0)
    order = used[np.argsort(prob[used], kind="stable")]
    rows = []
    for index in np.array_split(order, min(bins, len(order))):
        w = weight[index]
        observed = float(np.average(label[index], weights=w))
        low, high = wilson_interval(observed, w.sum() ** 2 / (w**2).sum())
        rows.append(
            {
                "n": len(index),
                "cases": int(label[index].sum()),
                "weight": float(w.sum()),
                "observed": observed,
                "observed_low": low,
                "observed_high": high,
                "mean_risk": float(np.average(prob[index], weights=w)),
                "min_risk": float(prob[index].min()),
                "max_risk": float(prob[index].max()),
            }
        )
    return rows
