"""Explanations as files, pages, printed tables and reasons.

- explanations.parquet: model, variant, eid, feature, delta_logit, delta_risk (per participant: it has eids, so it
  goes to a tracking server only under the rule predictions follow: cadft.eval.report.shareable_files);
- explanations.json: the summary (cadft.explain.importance), the cost and the truth's note;
- global_importance.png: mean |Δlogit| per part with its CI, one panel per method (cadft.explain.plots);
- the report section (templates/explanations.html.j2): in report.html with eval.explain=true, and the page cadft
  explain writes; its table of each participant's top reasons sits between PARTICIPANTS markers, which
  shareable_files cuts from a page that goes to a tracking server without eids.

A participant's reasons are the parts whose removal moved the language model's log-odds most (largest |Δlogit|; ties
in the record's order), leaving out those that moved nothing; cadft predict explain=true gives the same.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cadft.config.schema import Config
from cadft.eval.recalibration import Recalibrator
from cadft.eval.summary import with_ci
from cadft.explain.occlusion import record_parts
from cadft.explain.run import LANGUAGE_MODEL, Explanation, cost_line, explain_records, explain_run, text_features
from cadft.files import atomic_file, staging_dir
from cadft.layout import EXPLANATIONS_FILE, EXPLANATIONS_SUMMARY, IMPORTANCE_PLOT, REPORT_FILE

REASONS_CHUNK = 2_000  # participants whose occluded records are built and scored together (cadft predict)
BASELINE_NAMES = {"logistic": "logistic regression", "lightgbm": "LightGBM", "truth": "truth"}


@dataclass(frozen=True)
class Explained:
    explanation: Explanation
    files: dict[str, Path]
    section: dict  # what the report's explanations section shows

    @property
    def summary(self) -> dict:
        return self.explanation.summary


def explain_into(
    out_dir: Path,
    config: Config,
    table: pl.DataFrame,
    train_rows: pl.DataFrame,
    score: Callable[[list[str]], np.ndarray],
    recalibrator: Recalibrator,
    device: Callable[[], str],
    *,
    page_title: str | None = None,
) -> Explained:
    """Explain a run (cadft.explain.run.explain_run) and write its files into out_dir; with page_title, also the page
    report.html (cadft explain; with eval.explain=true the section goes into the evaluation's report.html)."""
    from cadft.eval.html import write_explain_html
    from cadft.eval.run import model_name

    explanation = explain_run(config, table, train_rows, score, recalibrator, device)
    name = model_name(config)
    files = write_explanations(out_dir, explanation, plots=config.eval.plots, model_name=name)
    shown = section(explanation, files, model_name=name, reasons=config.explain.reasons)
    if page_title is not None:
        with atomic_file(Path(out_dir) / REPORT_FILE) as partial:
            write_explain_html(partial, page_title, shown)
        files["report"] = Path(out_dir) / REPORT_FILE
    return Explained(explanation, files, shown)


def metrics_entry(summary: dict) -> dict:
    """What metrics.json keeps of an explanation (with eval.explain=true): aggregates that do not vary run to run (the
    whole summary, with the cost in time, is explanations.json)."""
    kept = ("participants", "split", "parts", "importance", "agreement")
    return {key: summary[key] for key in kept if key in summary}


def top_reasons(frame: pl.DataFrame, parts: list[str], k: int) -> pl.DataFrame:
    """eid, rank (1..k), feature, delta_logit, delta_risk: each participant's top reasons."""
    order = pl.col("feature").replace_strict({part: i for i, part in enumerate(parts)}, return_dtype=pl.Int64)
    removed = frame.filter(
        (pl.col("model") == LANGUAGE_MODEL) & (pl.col("variant") == "remove") & (pl.col("delta_logit") != 0)
    )
    ranked = removed.sort(pl.col("eid"), pl.col("delta_logit").abs(), order, descending=[False, True, False])
    top = ranked.group_by("eid", maintain_order=True).head(k)
    return top.with_columns(pl.int_range(1, pl.len() + 1).over("eid").alias("rank")).select(
        "eid", "rank", "feature", "delta_logit", "delta_risk"
    )


def reasons_of_records(
    records: pl.DataFrame,
    config: Config,
    score: Callable[[list[str]], np.ndarray],
    recalibrator: Recalibrator,
    chunk: int = REASONS_CHUNK,
) -> tuple[pl.DataFrame, int]:
    """(eid and the top explain.reasons reasons of each participant of a record table, as reasons_columns gives them;
    the number of distinct records scored). Taken `chunk` participants at a time, so memory stays bounded."""
    features = text_features(config)
    parts = record_parts(features, config.text, config.explain.features)
    found, scored = [], 0
    for rows in records.iter_slices(chunk):
        frame, cost = explain_records(rows, features, config, parts, score, recalibrator, ["remove"])
        found.append(top_reasons(frame, parts, config.explain.reasons))
        scored += cost.records_scored
    return reasons_columns(pl.concat(found), records["eid"], config.explain.reasons), scored


def reasons_columns(reasons: pl.DataFrame, eids: pl.Series, k: int) -> pl.DataFrame:
    """eid, reason_1, reason_1_delta_risk, ... reason_k_delta_risk (empty where a record has fewer reasons)."""
    wide = pl.DataFrame({"eid": eids})
    for rank in range(1, k + 1):
        picked = reasons.filter(pl.col("rank") == rank).select(
            "eid", pl.col("feature").alias(f"reason_{rank}"), pl.col("delta_risk").alias(f"reason_{rank}_delta_risk")
        )
        wide = wide.join(picked, on="eid", how="left", maintain_order="left")
    return wide


def write_explanations(out_dir: Path, explanation: Explanation, *, plots: bool, model_name: str) -> dict[str, Path]:
    """explanations.parquet, explanations.json and (plots) the importance plot in out_dir, all or none."""
    from cadft.explain.plots import importance_figure, save

    out_dir = Path(out_dir)
    names = {"explanations": EXPLANATIONS_FILE, "summary": EXPLANATIONS_SUMMARY}
    with staging_dir(out_dir, prefix=".explain-") as staging:
        explanation.frame.write_parquet(staging / EXPLANATIONS_FILE)
        summary = json.dumps(explanation.summary, indent=2, sort_keys=True, allow_nan=False) + "\n"
        (staging / EXPLANATIONS_SUMMARY).write_text(summary, encoding="utf-8")
        if plots:
            save(importance_figure(explanation.summary, display_names(model_name)), staging / IMPORTANCE_PLOT)
            names["importance_plot"] = IMPORTANCE_PLOT
        for name in names.values():
            os.replace(staging / name, out_dir / name)
    return {key: out_dir / name for key, name in names.items()}


def display_names(model_name: str) -> dict[str, str]:
    return {LANGUAGE_MODEL: model_name, **BASELINE_NAMES}


def method_label(model: str, variant: str, names: dict[str, str]) -> str:
    return f"{names.get(model, model)} ({variant})"


def importance_table(summary: dict, missing: str) -> tuple[list[tuple[str, str]], list[tuple[str, list[str]]]]:
    """(the methods, in order; per part, each method's mean |Δlogit| with its CI as text)."""
    methods = list(dict.fromkeys((row["model"], row["variant"]) for row in summary["importance"]))
    cells = {(row["model"], row["variant"], row["feature"]): row for row in summary["importance"]}

    def cell(row: dict | None) -> str:
        return missing if row is None else with_ci(row["mean_abs_delta_logit"], row, 3, missing=missing)

    return methods, [(part, [cell(cells.get((*method, part))) for method in methods]) for part in summary["parts"]]


def section(explanation: Explanation, files: dict[str, Path], *, model_name: str, reasons: int) -> dict:
    """What templates/explanations.html.j2 shows."""
    summary, names = explanation.summary, display_names(model_name)
    methods, rows = importance_table(summary, "–")
    top = top_reasons(explanation.frame, summary["parts"], reasons)
    people = []
    for record in explanation.records.sort("risk", descending=True).iter_rows(named=True):
        mine = top.filter(pl.col("eid") == record["eid"])
        people.append(
            {
                "eid": record["eid"],
                "risk": record["risk"],
                "reasons": [{**reason, "value": record[reason["feature"]]} for reason in mine.iter_rows(named=True)],
            }
        )

    def labelled(rows: list[dict]) -> list[dict]:
        return [{**row, "method": method_label(row["model"], row["variant"], names)} for row in rows]

    return {
        "summary": summary,
        "cost": cost_line(summary["cost"]),
        "methods": [method_label(model, variant, names) for model, variant in methods],
        "importance": [{"feature": part, "cells": cells} for part, cells in rows],
        "agreement": labelled(summary.get("agreement", [])),
        "direction": labelled(summary["direction"]),
        "plot": files.get("importance_plot"),
        "people": people,
        "reasons": reasons,
    }


def print_explanation(title: str, explanation: Explanation, model_name: str, footer: list[str] = ()) -> None:
    """Global importance per part and method with CIs, the agreement with the truth, the cost."""
    from rich.console import Console
    from rich.table import Table

    summary, names = explanation.summary, display_names(model_name)
    methods, rows = importance_table(summary, "-")
    table = Table(title=title)
    table.add_column("part of the record")
    for model, variant in methods:
        size = "|log-hazard contribution|" if model == "truth" else "|Δlogit|"
        table.add_column(f"{method_label(model, variant, names)}\nmean {size} [95% CI]", justify="right")
    for part, cells in rows:
        table.add_row(part, *cells)
    console = Console(width=200)
    console.print(table)
    for row in summary.get("agreement", []):
        console.print(
            f"{method_label(row['model'], row['variant'], names)} against the truth: Spearman of global importance "
            f"{with_ci(row['spearman'], row)}; median per-participant rank correlation "
            f"{with_ci(row['participant_rank_correlation_median'], None)} ({row['participants']} participants, "
            f"{len(row['features'])} parts)",
            soft_wrap=True,
        )
    console.print(summary["truth"], soft_wrap=True)
    console.print(f"cost: {cost_line(summary['cost'])}", soft_wrap=True)
    for line in footer:
        console.print(line, soft_wrap=True)
