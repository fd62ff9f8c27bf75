"""Decision metrics at risk thresholds, and the decision curve (net benefit against treat-all and treat-none).

A participant is flagged when risk >= threshold (as dcurves, the decision-curve authors' package, counts it).
Net benefit at threshold t: TP/n - FP/n * t / (1 - t); treat-all: prevalence - (1 - prevalence) * t / (1 - t);
treat-none: 0. The curve is computed by dcurves itself; the guideline-threshold table from confusion counts
(tests check both against each other and against hand-computed values). Under task.censoring=ipcw both are computed
from IPCW-weighted counts (dcurves takes no weights): n, TP and FP are sums of weights.
"""

from __future__ import annotations

import numpy as np


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def net_benefit(tp: int, fp: int, n: int, threshold: float) -> float:
    return tp / n - fp / n * threshold / (1 - threshold)


def treat_all_net_benefit(prevalence: float, threshold: float) -> float:
    return prevalence - (1 - prevalence) * threshold / (1 - threshold)


def at_risk_thresholds(label: np.ndarray, risk: np.ndarray, thresholds, weight: np.ndarray | None = None) -> list[dict]:
    """One row per threshold: flagged share, sensitivity, specificity, PPV, NPV, net benefit (model,
    treat-all), counts (weighted counts with IPCW weights)."""
    if weight is None:
        n, cases = len(label), int(label.sum())
    else:
        n, cases = float(weight.sum()), float(weight @ label)
    rows = []
    for threshold in thresholds:
        flagged = risk >= threshold
        if weight is None:
            tp, fp = int((flagged & (label == 1)).sum()), int((flagged & (label == 0)).sum())
        else:
            tp, fp = float(weight @ (flagged & (label == 1))), float(weight @ (flagged & (label == 0)))
        fn, tn = cases - tp, n - cases - fp
        rows.append(
            {
                "threshold": float(threshold),
                "flagged": float(flagged.mean()) if weight is None else (tp + fp) / n,
                "sensitivity": _ratio(tp, tp + fn),
                "specificity": _ratio(tn, tn + fp),
                "ppv": _ratio(tp, tp + fp),
                "npv": _ratio(tn, tn + fn),
                "net_benefit": net_benefit(tp, fp, n, threshold),
                "net_benefit_treat_all": treat_all_net_benefit(cases / n, threshold),
                "tp": tp,
                "fp": fp,
                "tn": tn,
                "fn": fn,
            }
        )
    return rows


def decision_curve_thresholds(spec) -> np.ndarray:
    """eval.decision_curve [low, high, step] -> the thresholds, high included."""
    low, high, step = (float(v) for v in spec)
    return np.round(np.arange(low, high + step / 2, step), 10)


def decision_curve(
    label: np.ndarray, risks: dict[str, np.ndarray], thresholds: np.ndarray, weight: np.ndarray | None = None
) -> list[dict]:
    """Rows {threshold, treat_all, treat_none, <model>: net benefit, ...} from dcurves.dca on the same participants;
    from weighted counts with IPCW weights."""
    if weight is not None:
        n, prevalence = float(weight.sum()), float(np.average(label, weights=weight))
        return [
            {"threshold": float(t), "treat_all": treat_all_net_benefit(prevalence, t), "treat_none": 0.0}
            | {
                name: net_benefit(
                    float(weight @ ((risk >= t) & (label == 1))), float(weight @ ((risk >= t) & (label == 0))), n, t
                )
                for name, risk in risks.items()
            }
            for t in thresholds
        ]
    import pandas as pd
    from dcurves import dca

    names = list(risks)
    frame = pd.DataFrame({"outcome": label.astype(int), **{f"m{i}": values for i, values in enumerate(risks.values())}})
    table = dca(data=frame, outcome="outcome", modelnames=list(frame.columns[1:]), thresholds=thresholds)
    by_model = {
        model: part.sort_values("threshold")["net_benefit"].to_numpy() for model, part in table.groupby("model")
    }
    rows = []
    for k, threshold in enumerate(thresholds):
        row = {
            "threshold": float(threshold),
            "treat_all": float(by_model["all"][k]),
            "treat_none": float(by_model["none"][k]),
        }
        rows.append(row | {name: float(by_model[f"m{i}"][k]) for i, name in enumerate(names)})
    return rows
