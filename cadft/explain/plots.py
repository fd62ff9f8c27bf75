"""The global-importance figure: one panel per method (the language model's variants, the baselines, the truth on
synthetic cohorts), mean |Δlogit| per part of the record with its bootstrap CI, parts in the order of the first
method's importance. Each panel has its own scale: the methods' log-odds are not on one scale (the truth's is a
log-hazard), their order is what compares. Drawn on the Agg canvas, as cadft.eval.plots draws."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120


def importance_figure(summary: dict, names: dict[str, str]) -> Figure:
    importance = pl.DataFrame(summary["importance"])
    methods = importance.select("model", "variant").unique(maintain_order=True).rows()
    first = importance.filter((pl.col("model") == methods[0][0]) & (pl.col("variant") == methods[0][1]))
    parts = first.sort("mean_abs_delta_logit")["feature"].to_list()
    parts += [part for part in summary["parts"] if part not in parts]
    figure = Figure(figsize=(2.6 * len(methods) + 1.6, 0.32 * len(parts) + 1.4))
    axes = figure.subplots(1, len(methods), sharey=True, squeeze=False)[0]
    for axis, (model, variant) in zip(axes, methods):
        rows = importance.filter((pl.col("model") == model) & (pl.col("variant") == variant))
        by_part = {row["feature"]: row for row in rows.iter_rows(named=True)}
        y = [i for i, part in enumerate(parts) if part in by_part]
        mean = [by_part[parts[i]]["mean_abs_delta_logit"] for i in y]
        low = [by_part[parts[i]]["low"] for i in y]
        high = [by_part[parts[i]]["high"] for i in y]
        errors = None
        if all(value is not None for value in low + high):
            errors = [[m - lo for m, lo in zip(mean, low)], [hi - m for m, hi in zip(mean, high)]]
        axis.barh(y, mean, xerr=errors, color="#4c72b0" if model != "truth" else "#888888", capsize=2)
        axis.set_title(f"{names.get(model, model)}\n({variant})", fontsize=9)
        axis.set_xlabel("mean |Δlogit|" if model != "truth" else "mean |log-hazard contribution|", fontsize=8)
        axis.tick_params(labelsize=8)
    axes[0].set_yticks(range(len(parts)), parts)
    figure.tight_layout()
    return figure


def save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=DPI)
    return path
