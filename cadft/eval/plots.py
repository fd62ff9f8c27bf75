"""Report figures for the test split: ROC and PR curves (model plus reference curves), calibration on equal-count bins,
decision curve, score distribution.

Figures are drawn on the Agg canvas directly (no pyplot), so nothing depends on a display or global state. Under
task.censoring=ipcw the curves are IPCW-weighted like the metrics; with follow-up, the calibration plot adds the
observed 10-year risk of each bin from everyone's follow-up (cadft.eval.survival).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from cadft.data.ipcw import weights_of
from cadft.eval.decision import decision_curve
from cadft.eval.metrics import recalibrated

PLOT_FILES = {
    "roc": "roc.png",
    "pr": "pr.png",
    "calibration": "calibration.png",
    "decision_curve": "decision_curve.png",
    "scores": "score_distribution.png",
}
DPI = 120


def write_plots(
    directory: Path, test: pl.DataFrame, metrics: dict, curves: Mapping[str, pl.DataFrame] | None = None
) -> dict[str, Path]:
    """PNG files in `directory`, keyed as PLOT_FILES. `test` holds the model's raw scores (prob); `curves` (name ->
    eid, label, prob as that model's reported risk) share the ROC, PR and decision-curve axes."""
    label, raw = test["label"].to_numpy(), test["prob"].to_numpy()
    risk = recalibrated(metrics, raw)
    models = {metrics.get("model", "model"): test.with_columns(pl.Series("prob", risk)), **(curves or {})}
    figures = {
        "roc": roc_figure(models),
        "pr": pr_figure(models),
        "calibration": calibration_figure(metrics["test"], metrics["recalibration"]["method"]),
        "decision_curve": decision_curve_figure(
            label,
            {name: frame.sort("eid")["prob"].to_numpy() for name, frame in models.items()},
            [row["threshold"] for row in metrics["test"]["decision_curve"]],
            weights_of(test),
        ),
        "scores": score_distribution_figure(label, risk, float(metrics["threshold"]["value"])),
    }
    paths = {}
    for name, figure in figures.items():
        paths[name] = Path(directory) / PLOT_FILES[name]
        FigureCanvasAgg(figure)
        figure.savefig(paths[name], format="png", dpi=DPI)
    return paths


def roc_figure(models: Mapping[str, pl.DataFrame]) -> Figure:
    """The first model is the one reported (drawn thicker); the rest are references on the same participants."""

    def draw(ax, label, prob, weight, width, name):
        fpr, tpr, _ = roc_curve(label, prob, sample_weight=weight)
        ax.plot(fpr, tpr, lw=width, label=f"{name} (AUROC {roc_auc_score(label, prob, sample_weight=weight):.3f})")

    def chance(ax):
        ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")

    axes = {
        "xlabel": "1 - specificity (false positive rate)",
        "ylabel": "sensitivity (true positive rate)",
        "title": "ROC, test split",
    }
    return _curves_figure(models, draw, chance, axes, "lower right")


def pr_figure(models: Mapping[str, pl.DataFrame]) -> Figure:
    def draw(ax, label, prob, weight, width, name):
        precision, recall, _ = precision_recall_curve(label, prob, sample_weight=weight)
        ax.step(
            recall,
            precision,
            where="post",
            lw=width,
            label=f"{name} (AUPRC {average_precision_score(label, prob, sample_weight=weight):.3f})",
        )

    def prevalence_line(ax):
        first = next(iter(models.values()))
        prevalence = float(np.average(first["label"].to_numpy(), weights=weights_of(first)))
        ax.axhline(prevalence, ls=":", color="grey", label=f"prevalence {prevalence:.3f}")

    axes = {"xlabel": "recall (sensitivity)", "ylabel": "precision (PPV)", "title": "Precision-recall, test split"}
    return _curves_figure(models, draw, prevalence_line, axes, "upper right")


def _curves_figure(models: Mapping[str, pl.DataFrame], draw, reference, axes: dict, legend: str) -> Figure:
    """One curve per model on shared unit axes, the first (the one reported) thicker, then a reference line."""
    figure = Figure(figsize=(5.5, 5))
    ax = figure.add_subplot()
    for rank, (name, frame) in enumerate(models.items()):
        draw(ax, frame["label"].to_numpy(), frame["prob"].to_numpy(), weights_of(frame), 2 if rank == 0 else 1.2, name)
    reference(ax)
    ax.set(**axes, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc=legend, fontsize="small")
    figure.tight_layout()
    return figure


def calibration_figure(test_block: dict, method: str) -> Figure:
    """Observed rate (Wilson 95% CI) against mean predicted risk per equal-count bin: the reported (recalibrated) risk
    on the left, zoomed to its range, and the raw score on the right (bin sizes are in metrics.json, deciles)."""
    figure = Figure(figsize=(10, 5))
    panels = figure.subplots(1, 2)
    for ax, name, block in ((panels[0], f"risk ({method})", test_block), (panels[1], "raw score", test_block["raw"])):
        rows = block["deciles"]
        x, y = np.array([r["mean_risk"] for r in rows]), np.array([r["observed"] for r in rows])
        error = np.array(
            [[r["observed"] - r["observed_low"] for r in rows], [r["observed_high"] - r["observed"] for r in rows]]
        )
        ax.errorbar(x, y, yerr=error, fmt="o-", capsize=2, label=name)
        if block is test_block and "survival" in block:  # the same risk, observed from everyone's follow-up
            follow = block["survival"]["deciles"]
            ax.plot(
                [r["mean_risk"] for r in follow],
                [r["observed"] for r in follow],
                "s--",
                ms=4,
                label="observed from follow-up (Aalen-Johansen)",
            )
            rows = rows + follow
        limit = min(
            1.0, 1.05 * max(0.05, x.max(), max(r["observed_high"] or 0 for r in rows))
        )  # low risks near 0: zoom
        ax.plot([0, limit], [0, limit], ls=":", color="grey", label="perfect calibration")
        oe = f"O/E {block['oe_ratio']:.2f}, slope " + (
            "–" if block["calibration_slope"] is None else f"{block['calibration_slope']:.2f}"
        )
        ax.set(
            xlabel="mean predicted risk",
            ylabel="observed rate (95% CI)",
            xlim=(0, limit),
            ylim=(0, limit),
            title=f"{name}: {oe}",
        )
        ax.legend(loc="upper left", fontsize="small")
    figure.suptitle(f"Calibration, test split ({len(test_block['deciles'])} equal-count bins)")
    figure.tight_layout()
    return figure


def decision_curve_figure(
    label: np.ndarray, risks: Mapping[str, np.ndarray], thresholds: list[float], weight: np.ndarray | None = None
) -> Figure:
    """Net benefit against the risk threshold for each model, treat-all and treat-none (dcurves)."""
    rows = decision_curve(label, dict(risks), np.asarray(thresholds), weight)
    figure = Figure(figsize=(6, 4.5))
    ax = figure.add_subplot()
    x = [row["threshold"] for row in rows]
    for rank, name in enumerate(risks):
        ax.plot(x, [row[name] for row in rows], lw=2 if rank == 0 else 1.2, label=name)
    ax.plot(x, [row["treat_all"] for row in rows], color="grey", ls="--", label="treat all")
    ax.plot(x, [row["treat_none"] for row in rows], color="black", ls=":", label="treat none")
    prevalence = float(np.average(label, weights=weight))
    ax.set(
        xlabel="risk threshold",
        ylabel="net benefit",
        title="Decision curve, test split",
        ylim=(-0.1 * prevalence, 1.1 * prevalence),
    )
    ax.legend(fontsize="small")
    figure.tight_layout()
    return figure


def score_distribution_figure(label: np.ndarray, prob: np.ndarray, threshold: float) -> Figure:
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    edges = np.linspace(0, max(float(prob.max()), threshold) * 1.001 or 1.0, 50)
    for value, name in ((0, "controls"), (1, "cases")):
        ax.hist(
            prob[label == value],
            bins=edges,
            density=True,
            alpha=0.55,
            label=f"{name} (n={int((label == value).sum())})",
        )
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="predicted risk", ylabel="density", title="Score distribution by label, test split")
    ax.legend(fontsize="small")
    figure.tight_layout()
    return figure
