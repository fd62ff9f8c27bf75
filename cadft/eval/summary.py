"""The one printed summary of evaluation results (cadft-train, cadft-eval, cadft-baselines): a table per model of
validation AUROC (what choices are made on), test AUROC with its CI, Brier, O/E and calibration slope of the
reported risk, for incident tasks Uno's C and the IPCW Brier score on everyone followed up (cadft.eval.survival),
and, for a model compared with baselines, the paired differences; when its metrics have the `incremental` block, a
second table: what the language model adds to each clinical model (ΔAUROC, NRI, IDI)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def with_ci(value, interval, digits: int = 3, missing: str = "-") -> str:
    """`0.679 [0.604, 0.751]`: a value with its interval (when there is one), for the summary and report.html."""
    if value is None:
        return missing
    text = f"{value:.{digits}f}"
    if interval and interval.get("low") is not None:
        text += f" [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"
    return text


def _survival_cells(test: dict) -> list[str]:
    survival = test.get("survival")
    if survival is None:
        return ["-", "-"]
    return [with_ci(survival["uno_c"], None), with_ci(survival["brier_ipcw"], None, 4)]


def _row(name: str, metrics: dict, survival: bool) -> list[str]:
    test, ci = metrics["test"], metrics["test"].get("ci") or {}
    slope = test.get("calibration_slope")
    return [
        name,
        with_ci(metrics["validation"]["auroc"], None),
        with_ci(test["auroc"], ci.get("auroc")),
        with_ci(test["brier"], ci.get("brier"), 4),
        with_ci(test["oe_ratio"], ci.get("oe_ratio"), 2),
        "-" if slope is None else f"{slope:.2f}",
        f"{100 * test['mean_risk']:.1f}% / {100 * test['prevalence']:.1f}%",
        *(_survival_cells(test) if survival else []),
    ]


def summary_table(title: str, models: dict[str, dict], comparison: dict | None = None) -> Table:
    """models: name -> metrics.json content (the first is the one compared); comparison: metrics['comparison']."""
    table = Table(title=title)
    columns = [
        "model",
        "val AUROC",
        "test AUROC [95% CI]",
        "Brier [95% CI]",
        "O/E [95% CI]",
        "slope",
        "mean risk / observed",
    ]
    survival = any("survival" in metrics["test"] for metrics in models.values())
    if survival:
        columns += ["Uno's C", "IPCW Brier"]
    if comparison:
        columns += ["ΔAUROC model − row [95% CI]", "ΔBrier model − row"]
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=column != "model")
    for rank, (name, metrics) in enumerate(models.items()):
        extra = []
        if comparison:
            delta = comparison.get(name)
            extra = (
                [
                    "" if delta is None else with_ci(delta["delta_auroc"]["value"], delta["delta_auroc"]),
                    "" if delta is None else with_ci(delta["delta_brier"]["value"], delta["delta_brier"], 4),
                ]
                if rank
                else ["", ""]
            )
        table.add_row(*_row(name, metrics, survival), *extra)
    return table


def incremental_table(incremental: dict) -> Table:
    """incremental: metrics['incremental'] (combination -> block of cadft.eval.reclassification)."""
    table = Table(title="What the language model adds (combination − clinical model alone, same test participants)")
    columns = ["combination", "clinical model alone", "ΔAUROC [95% CI]", "NRI at the risk thresholds [95% CI]"]
    columns += ["NRI events / non-events", "continuous NRI [95% CI]", "IDI [95% CI]"]
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index < 2 else "right", no_wrap=index >= 2)
    for name, block in incremental.items():
        table.add_row(
            name,
            block["reference"],
            with_ci(block["delta_auroc"]["value"], block["delta_auroc"]),
            with_ci(block["nri"]["value"], block["nri"]),
            f"{block['nri_events']['value']:+.3f} / {block['nri_nonevents']['value']:+.3f}",
            with_ci(block["nri_continuous"]["value"], block["nri_continuous"]),
            with_ci(block["idi"]["value"], block["idi"], 4),
        )
    return table


def print_summary(title: str, models: dict[str, dict], comparison: dict | None = None, footer: list[str] = ()) -> None:
    console = Console(width=220)  # the comparison's eleven columns of values with intervals, one line per model
    console.print(summary_table(title, models, comparison))
    incremental = next(iter(models.values()), {}).get("incremental")
    if incremental:
        console.print(incremental_table(incremental))
    for line in footer:
        console.print(line, soft_wrap=True)
