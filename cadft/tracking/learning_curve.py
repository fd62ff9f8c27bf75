"""Learning curves: test AUROC and Brier against the number of training records, the language model beside the
classical baselines trained on exactly the same records and the zero-shot backbone
(multirun_templates/learning_curve.yaml).

Each training run's report already holds the equal-terms baselines fitted on its own records, so a sweep over
train.max_train_examples (x seeds) is all a curve needs. Per number of records and model: the runs, the mean test
AUROC and Brier over seeds with their range, and for the language model the mean of the runs' bootstrap 95% CIs.
Written by cadft-compare and at the end of such a sweep, as learning_curve.csv and learning_curve.png.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cadft.layout import LEARNING_CURVE_CSV, LEARNING_CURVE_PLOT
from cadft.tracking import names

N_KEY = "train.max_train_examples"  # the swept key that makes a sweep a learning curve
RECORDS_PARAM = "data.train_examples"  # what a run trained on (the key caps it; a small training split caps it too)
LANGUAGE_MODEL = "language model"


def curve(runs: list) -> pl.DataFrame:
    """One row per (training records, model); empty when the runs did not vary train.max_train_examples."""
    points = []
    for run in runs:
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        if run.info.status != "FINISHED" or names.SWEPT_TAG + N_KEY not in tags or RECORDS_PARAM not in params:
            continue
        records = int(params[RECORDS_PARAM])
        points.append(
            {
                "records": records,
                "model": LANGUAGE_MODEL,
                "auroc": metrics.get("test/auroc"),
                "brier": metrics.get("test/brier"),
                "ci_low": metrics.get("test/auroc_ci_low"),
                "ci_high": metrics.get("test/auroc_ci_high"),
            }
        )
        for key, value in metrics.items():
            if key.startswith(names.COMPARISON) and key.endswith("/auroc"):
                name = key[len(names.COMPARISON) : -len("/auroc")]
                points.append(
                    {
                        "records": records,
                        "model": name,
                        "auroc": value,
                        "brier": metrics.get(f"{names.COMPARISON}{name}/brier"),
                        "ci_low": None,
                        "ci_high": None,
                    }
                )
    schema = {
        "records": pl.Int64,
        "model": pl.String,
        "auroc": pl.Float64,
        "brier": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
    }
    return (
        pl.DataFrame(points, schema=schema)
        .group_by("records", "model")
        .agg(
            pl.len().alias("runs"),
            pl.col("auroc").mean().alias("auroc_mean"),
            pl.col("auroc").min().alias("auroc_min"),
            pl.col("auroc").max().alias("auroc_max"),
            pl.col("ci_low").mean().alias("auroc_ci_low"),
            pl.col("ci_high").mean().alias("auroc_ci_high"),
            pl.col("brier").mean().alias("brier_mean"),
        )
        .sort("model", "records")
    )


def plot(table: pl.DataFrame, path: Path, title: str) -> Path:
    """AUROC (left) and Brier (right) against training records on a log axis, one line per model; the language model's
    band is its mean bootstrap 95% CI, every model's bars the range over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    auroc_axes, brier_axes = figure.subplots(1, 2)
    for (model,), rows in table.group_by("model", maintain_order=True):
        rows = rows.sort("records")
        x = rows["records"].to_list()
        line = auroc_axes.errorbar(
            x,
            rows["auroc_mean"].to_list(),
            marker="o",
            capsize=3,
            label=model,
            linewidth=2.5 if model == LANGUAGE_MODEL else 1,
            yerr=[
                (rows["auroc_mean"] - rows["auroc_min"]).to_list(),
                (rows["auroc_max"] - rows["auroc_mean"]).to_list(),
            ],
        )
        if model == LANGUAGE_MODEL and rows["auroc_ci_low"].null_count() == 0:
            auroc_axes.fill_between(
                x,
                rows["auroc_ci_low"].to_list(),
                rows["auroc_ci_high"].to_list(),
                alpha=0.15,
                color=line[0].get_color(),
            )
        brier_axes.plot(
            x, rows["brier_mean"].to_list(), marker="o", label=model, linewidth=2.5 if model == LANGUAGE_MODEL else 1
        )
    ticks = sorted(set(table["records"].to_list()))
    for axes, label in (
        (auroc_axes, "test AUROC (mean over seeds; bars: range)"),
        (brier_axes, "test Brier score (mean over seeds)"),
    ):
        axes.set_xscale("log", base=2)
        axes.set_xticks(ticks, [f"{n:,}" for n in ticks])
        axes.minorticks_off()
        axes.set_xlabel("training records (the same records for every model)")
        axes.set_ylabel(label)
    auroc_axes.axhline(0.5, linestyle="--", color="grey", linewidth=1)
    auroc_axes.legend(fontsize=8)
    figure.suptitle(title)
    figure.savefig(path, dpi=120)
    return path


def publish(runs: list, client, parent_id: str | None, out_dir: Path, title: str, artifact_dir: str) -> list[Path]:
    """learning_curve.csv and .png in out_dir (logged to the parent run under artifact_dir when there is one); nothing
    when the runs are not a learning curve."""
    table = curve(runs)
    if table.is_empty():
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    table.write_csv(out_dir / LEARNING_CURVE_CSV)
    files = [out_dir / LEARNING_CURVE_CSV, plot(table, out_dir / LEARNING_CURVE_PLOT, f"{title}: learning curve")]
    if parent_id is not None:
        for path in files:
            client.log_artifact(parent_id, str(path), artifact_dir)
    return files
