"""Report figures for the test split: ROC and PR curves (model plus reference curves), reliability, score distribution.

Figures are drawn on the Agg canvas directly (no pyplot), so nothing depends on a display or global state.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from cadft.eval.metrics import apply_temperature, reliability_table

PLOT_FILES = {"roc": "roc.png", "pr": "pr.png", "reliability": "reliability.png", "scores": "score_distribution.png"}
DPI = 120


def write_plots(directory: Path, test: pl.DataFrame, metrics: dict, curves: Mapping[str, pl.DataFrame] | None = None) -> dict[str, Path]:
    """PNG files in `directory`, keyed as PLOT_FILES; `curves` (name -> eid, label, prob) share the ROC and PR axes."""
    models = {(metrics.get("baseline") or {}).get("name", "model"): test, **(curves or {})}
    label, prob = test["label"].to_numpy(), test["prob"].to_numpy()
    scaling = metrics.get("temperature_scaling")
    calibrated = apply_temperature(prob, scaling["temperature"]) if scaling else None
    figures = {
        "roc": roc_figure(models),
        "pr": pr_figure(models),
        "reliability": reliability_figure(label, prob, int(metrics["calibration_bins"]), calibrated),
        "scores": score_distribution_figure(label, prob, float(metrics["threshold"]["value"])),
    }
    paths = {}
    for name, figure in figures.items():
        paths[name] = Path(directory) / PLOT_FILES[name]
        FigureCanvasAgg(figure)
        figure.savefig(paths[name], format="png", dpi=DPI)
    return paths


def roc_figure(models: Mapping[str, pl.DataFrame]) -> Figure:
    """The first model is the one reported (drawn thicker); the rest are references on the same participants."""
    figure = Figure(figsize=(5.5, 5))
    ax = figure.add_subplot()
    for rank, (name, frame) in enumerate(models.items()):
        label, prob = frame["label"].to_numpy(), frame["prob"].to_numpy()
        fpr, tpr, _ = roc_curve(label, prob)
        ax.plot(fpr, tpr, lw=2 if rank == 0 else 1.2, label=f"{name} (AUROC {roc_auc_score(label, prob):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)", title="ROC, test split", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return figure


def pr_figure(models: Mapping[str, pl.DataFrame]) -> Figure:
    figure = Figure(figsize=(5.5, 5))
    ax = figure.add_subplot()
    for rank, (name, frame) in enumerate(models.items()):
        label, prob = frame["label"].to_numpy(), frame["prob"].to_numpy()
        precision, recall, _ = precision_recall_curve(label, prob)
        ax.step(recall, precision, where="post", lw=2 if rank == 0 else 1.2, label=f"{name} (AUPRC {average_precision_score(label, prob):.3f})")
    prevalence = float(next(iter(models.values()))["label"].mean())
    ax.axhline(prevalence, ls=":", color="grey", label=f"prevalence {prevalence:.3f}")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall, test split", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    return figure


def reliability_figure(label: np.ndarray, prob: np.ndarray, bins: int, calibrated: np.ndarray | None = None) -> Figure:
    """Observed rate against mean predicted risk per bin, with the number of participants per bin underneath."""
    figure = Figure(figsize=(5.5, 6.5))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    series = {"raw": prob} | ({"temperature-scaled": calibrated} if calibrated is not None else {})
    limit = 0.05
    for name, values in series.items():
        rows = [row for row in reliability_table(label, values, bins) if row["n"]]
        mean_prob, observed = [r["mean_prob"] for r in rows], [r["observed_rate"] for r in rows]
        top.plot(mean_prob, observed, marker="o", label=name)
        limit = max(limit, *mean_prob, *observed)
    limit = min(1.0, 1.05 * limit)  # low-prevalence risks sit near 0: zoom to the populated range
    top.plot([0, limit], [0, limit], ls=":", color="grey", label="perfect calibration")
    top.set(ylabel="observed rate", title=f"Reliability, test split ({bins} equal-width bins)", xlim=(0, limit), ylim=(0, limit))
    top.legend(loc="upper left", fontsize="small")
    bottom.hist(prob, bins=np.linspace(0, 1, bins + 1), color="grey")
    bottom.set(xlabel="predicted risk", ylabel="participants", yscale="log")
    figure.tight_layout()
    return figure


def score_distribution_figure(label: np.ndarray, prob: np.ndarray, threshold: float) -> Figure:
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    edges = np.linspace(0, max(float(prob.max()), threshold) * 1.001 or 1.0, 50)
    for value, name in ((0, "controls"), (1, "cases")):
        ax.hist(prob[label == value], bins=edges, density=True, alpha=0.55, label=f"{name} (n={int((label == value).sum())})")
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="predicted risk", ylabel="density", title="Score distribution by label, test split")
    ax.legend(fontsize="small")
    figure.tight_layout()
    return figure
