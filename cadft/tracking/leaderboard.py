"""Leaderboards of training runs, for a sweep or a whole MLflow experiment (cadft compare, and the end of every sweep).

One row per run: the swept values (or strategy, imbalance, ZeRO stage and backbone outside a sweep), the validation
AUROC, then test AUROC, AUPRC and Brier score with their 95% CIs, O/E and calibration slope of the reported risk, the
training step whose checkpoint validation chose, training time, peak memory and the run's status. Runs are ranked by
VALIDATION AUROC: the best run of a sweep is chosen on validation, and the test columns are reported beside it, never
used to choose. `publish` writes leaderboard.csv, a forest plot of test AUROC and CIs (auroc_forest.png, in validation
rank order) and, when asked, leaderboard.html (static, plots embedded), and logs them to the sweep's parent run
(leaderboard/).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cadft.errors import CadftError
from cadft.layout import LEADERBOARD_CSV, LEADERBOARD_HTML, LEADERBOARD_PLOT
from cadft.tracking import names

RANK_BY = ("val_auroc", names.RANK_METRIC)  # the column runs are ranked by, and its MLflow metric
SCORES = {
    "auroc": "test/auroc",
    "auprc": "test/auprc",
    "brier": "test/brier",
}  # column -> MLflow metric, with _ci_low/_ci_high
CALIBRATION = {"oe_ratio": "test/oe_ratio", "calibration_slope": "test/calibration_slope"}
USAGE = names.USAGE_METRICS | {"best_step": names.TRAINING_STEPS["best_step"]}  # the step validation chose
RUN_COLUMNS = {"run": "mlflow.runName", **{tag: tag for tag in names.RUN_TAGS}}  # what tells runs apart outside a sweep
CSV_FILE, PLOT_FILE, HTML_FILE = LEADERBOARD_CSV, LEADERBOARD_PLOT, LEADERBOARD_HTML
ARTIFACT_DIR = "leaderboard"
PAGE = 1000  # runs per search_runs request


def sweep_runs(client, parent_id: str) -> list:
    """The child runs of a sweep's parent run (in any experiment: a sweep may vary the task)."""
    return _search(client, f"tags.mlflow.parentRunId = '{parent_id}'")


def experiment_runs(client, name: str) -> list:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        known = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise CadftError(f"--experiment {name}: no such MLflow experiment (known: {known})")
    return [
        run
        for run in _search(client, "", [experiment.experiment_id])
        if run.data.tags.get(names.KIND_TAG) not in (names.KIND_SWEEP, names.KIND_EVALUATION, names.KIND_EXPLANATION)
    ]


def latest_sweep(client):
    runs = client.search_runs(
        _experiment_ids(client),
        f"tags.{names.KIND_TAG} = '{names.KIND_SWEEP}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise CadftError(f"no sweep in {client.tracking_uri}: run one (cadft-train -m ...) or pass --experiment NAME")
    return runs[0]


def sweep_leaderboard(client, parent_id: str) -> pl.DataFrame:
    runs = sweep_runs(client, parent_id)
    return leaderboard(runs, swept_columns(runs))


def swept_columns(runs: list) -> dict[str, str]:
    """Column -> tag of the values a sweep varied; what tells runs apart outside a sweep when it varied nothing."""
    swept = sorted({tag for run in runs for tag in run.data.tags if tag.startswith(names.SWEPT_TAG)})
    return {tag.removeprefix(names.SWEPT_TAG): tag for tag in swept} or RUN_COLUMNS


def leaderboard(runs: list, columns: dict[str, str]) -> pl.DataFrame:
    """One row per run: the given tag columns (column -> tag), validation AUROC, test scores with CIs, calibration,
    usage, status; finished runs by validation AUROC, best first (test never ranks)."""
    identity = list(columns)
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        row = {"run_id": run.info.run_id, "status": run.info.status}
        row |= {column: tags.get(tag) for column, tag in columns.items()}
        row[RANK_BY[0]] = metrics.get(RANK_BY[1])
        for column, metric in SCORES.items():
            row |= {
                column: metrics.get(metric),
                f"{column}_ci_low": metrics.get(f"{metric}_ci_low"),
                f"{column}_ci_high": metrics.get(f"{metric}_ci_high"),
            }
        row |= {column: metrics.get(metric) for column, metric in (CALIBRATION | USAGE).items()}
        row["error"] = tags.get(names.ERROR_TAG)
        rows.append(row)
    schema = {
        "run_id": pl.String,
        "status": pl.String,
        **dict.fromkeys(identity, pl.String),
        RANK_BY[0]: pl.Float64,
        **{f"{c}{s}": pl.Float64 for c in SCORES for s in ("", "_ci_low", "_ci_high")},
        **dict.fromkeys(CALIBRATION | USAGE, pl.Float64),
        "error": pl.String,
    }
    board = pl.DataFrame(rows, schema=schema)
    return board.sort([pl.col("status") != "FINISHED", RANK_BY[0]], descending=[False, True], nulls_last=True)


def identity_columns(board: pl.DataFrame) -> list[str]:
    """The columns that tell runs apart: between the leading run_id and status, and the scores."""
    return board.columns[board.columns.index("status") + 1 : board.columns.index(RANK_BY[0])]


def run_label(row: dict, identity: list[str]) -> str:
    return ", ".join(f"{key}={row[key]}" for key in identity)


def print_leaderboard(board: pl.DataFrame, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    identity = identity_columns(board)
    table = Table(title=title)
    for column in display_columns(identity):
        table.add_column(column, justify="left" if column in identity else "right")
    for row in display_rows(board, identity):
        table.add_row(*row.values())
    console = Console(width=230)  # the identity, five values with intervals and six more columns, one line per run
    console.print(table)
    for row in board.filter(pl.col("error").is_not_null()).iter_rows(named=True):
        console.print(f"{run_label(row, identity)} {row['status']}: {row['error']}", soft_wrap=True)


def display_columns(identity: list[str]) -> list[str]:
    return [
        "#",
        *identity,
        "val AUROC (ranks)",
        "test AUROC [95% CI]",
        "AUPRC [95% CI]",
        "Brier [95% CI]",
        "O/E",
        "slope",
        "best step",
        "train s",
        "peak GiB",
        "status",
    ]


def display_rows(board: pl.DataFrame, identity: list[str]) -> list[dict[str, str]]:
    """The leaderboard as text cells under display_columns, in rank order (printed and in leaderboard.html)."""
    rows = []
    for rank, row in enumerate(board.iter_rows(named=True), start=1):
        cells = [
            str(rank),
            *[str(row[key]) for key in identity],
            _number(row[RANK_BY[0]], "{:.3f}"),
            *[_with_ci(row, column) for column in SCORES],
            _number(row["oe_ratio"], "{:.2f}"),
            _number(row["calibration_slope"], "{:.2f}"),
            _number(row["best_step"], "{:.0f}"),
            _number(row["train_seconds"], "{:.0f}"),
            _number(row["peak_memory_gb"], "{:.2f}"),
            row["status"],
        ]
        rows.append(dict(zip(display_columns(identity), cells)))
    return rows


def _with_ci(row: dict, column: str) -> str:
    digits = 4 if column == "brier" else 3
    if row[column] is None:
        return "-"
    text = f"{row[column]:.{digits}f}"
    if row[f"{column}_ci_low"] is not None:
        text += f" [{row[f'{column}_ci_low']:.{digits}f}, {row[f'{column}_ci_high']:.{digits}f}]"
    return text


def _number(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def forest_plot(board: pl.DataFrame, path: Path, title: str) -> Path:
    """Test AUROC with its 95% CI per finished run, in validation rank order (best on validation at the top); a dashed
    line marks chance (0.5)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scored = board.filter(pl.col("auroc").is_not_null())
    identity = identity_columns(board)
    labels = [run_label(row, identity) for row in scored.iter_rows(named=True)]
    width = 4 + 0.08 * max(map(len, labels), default=0)  # room for the run labels beside the axes
    figure = Figure(figsize=(width, 1.2 + 0.4 * max(len(labels), 1)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(labels)))[::-1]
    low = (scored["auroc"] - scored["auroc_ci_low"].fill_null(scored["auroc"])).to_list()
    high = (scored["auroc_ci_high"].fill_null(scored["auroc"]) - scored["auroc"]).to_list()
    axes.errorbar(scored["auroc"].to_list(), positions, xerr=[low, high], fmt="o", capsize=3)
    axes.axvline(0.5, linestyle="--", color="grey", linewidth=1)
    axes.set_yticks(positions, labels)
    axes.set_xlabel("test AUROC (95% CI); rows ranked by validation AUROC")
    axes.set_title(title)
    if not labels:
        axes.text(0.5, 0.5, "no finished run has a test AUROC", ha="center", transform=axes.transAxes)
    figure.savefig(path, dpi=120)
    return path


def publish(
    board: pl.DataFrame, client, parent_id: str | None, out_dir: Path, title: str = "test AUROC", html: bool = False
) -> list[Path]:
    """leaderboard.csv, the forest plot (and leaderboard.html) in out_dir; logged to the sweep's parent run when there
    is one."""
    out_dir.mkdir(parents=True, exist_ok=True)
    board.write_csv(out_dir / CSV_FILE)
    files = [out_dir / CSV_FILE, forest_plot(board, out_dir / PLOT_FILE, title)]
    if html:
        from cadft.eval.html import write_comparison_html

        identity = identity_columns(board)
        notes = [
            "Ranked by validation AUROC: the choice is made on validation; the test columns are reported "
            "beside it, never used to choose.",
            "Test AUROC intervals are per run; whether two runs differ needs their paired difference (each "
            "run's report.html has it "
            "against the baselines).",
        ]
        files.append(
            write_comparison_html(
                out_dir / HTML_FILE,
                title,
                display_rows(board, identity),
                display_columns(identity),
                notes,
                {"forest": files[1]},
            )
        )
    if parent_id is not None:
        for path in files:
            client.log_artifact(parent_id, str(path), ARTIFACT_DIR)
    return files


def _search(client, filter_string: str, experiment_ids: list[str] | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids or _experiment_ids(client), filter_string, max_results=PAGE, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _experiment_ids(client) -> list[str]:
    return [experiment.experiment_id for experiment in client.search_experiments()]
