"""Explain a run: explain.n participants (a fixed random sample of explain.split), by occlusion for the language model
and by their own attributions for the baselines, summarised and checked against the truth where there is one.

The records are written again from the extract (data.path), as cadft predict writes them: the prepared table keeps
the feature values but not everything the text is written from (special answers, the history's names). Each explained
participant's record must come out exactly as the run's prepared table has it, or the extract is not the run's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from cadft.config.schema import Config
from cadft.data.features import Feature, parse_features
from cadft.data.prepare import feature_columns
from cadft.data.text import select_features
from cadft.errors import CadftError
from cadft.eval.recalibration import Recalibrator
from cadft.explain.baselines import baseline_attributions
from cadft.explain.importance import summarize
from cadft.explain.occlusion import Cost, deltas, occlude, record_parts, reference_values
from cadft.explain.truth import true_contributions

LANGUAGE_MODEL = "llm"  # the language model's name in explanations.parquet (the baselines go by theirs)
COLUMNS = ("model", "variant", "eid", "feature", "delta_logit", "delta_risk")  # explanations.parquet


@dataclass(frozen=True)
class Explanation:
    frame: pl.DataFrame  # COLUMNS: one row per method, participant and part
    records: pl.DataFrame  # eid, risk (the whole record's calibrated risk), and each part's value as written
    summary: dict  # explanations.json: participants, parts, cost, importance, direction, agreement


def sample_eids(table: pl.DataFrame, config: Config) -> list[int]:
    """explain.n participants of explain.split drawn with explain.seed, in the order drawn."""
    rows = table.filter(pl.col("split") == config.explain.split)
    if rows.height == 0:
        raise CadftError(f"explain.split={config.explain.split}: the run's prepared table has no such participants")
    return rows.sample(n=min(config.explain.n, rows.height), seed=config.explain.seed)["eid"].to_list()


def explain_run(
    config: Config,
    table: pl.DataFrame,
    train_rows: pl.DataFrame,
    score: Callable[[list[str]], np.ndarray],
    recalibrator: Recalibrator,
    device: Callable[[], str],
) -> Explanation:
    """Explain the run whose prepared table is `table`, trained on `train_rows`; `score` is its model (texts ->
    P(label=1)), loaded when first called, `recalibrator` its calibrator and `device()` where the model runs."""
    from cadft.data.records import record_table

    eids = sample_eids(table, config)
    features = text_features(config)
    parts = record_parts(features, config.text, config.explain.features)
    records = record_table(config.data, config.text, config.task)
    sample = _in_order(eids).join(records, on="eid", how="left", maintain_order="left")
    _check_same_records(sample, table, config)
    reference = {}
    if "median" in config.explain.variants:
        train_eids = table.filter(pl.col("split") == "train")["eid"]
        reference = reference_values(records.filter(pl.col("eid").is_in(train_eids.implode())), features, parts)
    started = time.perf_counter()
    variants = config.explain.variants
    llm, cost = explain_records(sample, features, config, parts, score, recalibrator, variants, reference)
    seconds = time.perf_counter() - started
    frames = [llm]
    if config.explain.baselines and feature_columns(table):
        frames.append(baseline_attributions(table, config, train_rows, eids, parts))
    frame = pl.concat([f.select(COLUMNS) for f in frames if f.height])
    truth, truth_note = true_contributions(config, eids, parts)
    summary = {
        "participants": len(eids),
        "split": config.explain.split,
        "parts": parts,
        "variants": list(config.explain.variants),
        "baselines": list(config.explain.baselines),
        "reference": {part: _plain(value) for part, value in reference.items()},
        "cost": cost_summary(cost, len(parts), len(variants), seconds, device()),
        "truth": truth_note,
        **summarize(
            frame,
            eids,
            parts,
            {part: _direction_value(sample[part]) for part in parts},
            truth,
            bootstrap=config.explain.bootstrap,
            ci_level=config.eval.ci_level,
            seed=config.explain.seed,
        ),
    }
    risk = llm.filter(pl.col("variant") == llm["variant"][0]).unique("eid", maintain_order=True)
    shown = sample.select("eid", *[_shown_value(sample[part], features, part) for part in parts])
    return Explanation(frame, shown.join(risk.select("eid", "risk"), on="eid", how="left"), summary)


def text_features(config: Config) -> list[Feature]:
    """The features a run's records are written from, in the text's order."""
    return select_features(parse_features(config.data.features), config.text.features)


def explain_records(
    records: pl.DataFrame,
    features: list[Feature],
    config: Config,
    parts: list[str],
    score: Callable[[list[str]], np.ndarray],
    recalibrator: Recalibrator,
    variants,
    reference: dict | None = None,
) -> tuple[pl.DataFrame, Cost]:
    """The language model's occlusion of `records` (a record table): COLUMNS plus risk (the whole record's)."""
    frame, cost = occlude(records, features, config.text, parts, variants, reference or {}, score)
    frame = deltas(frame, recalibrator).with_columns(
        pl.lit(LANGUAGE_MODEL).alias("model"), pl.Series("risk", recalibrator.apply(frame["prob"].to_numpy()))
    )
    return frame.select(*COLUMNS, "risk"), cost


def cost_summary(cost: Cost, parts: int, variants: int, seconds: float, device: str) -> dict:
    return {
        "participants": cost.participants,
        "forward_passes": cost.forward_passes,
        "records_scored": cost.records_scored,
        "per_participant": 1 + parts * variants,
        "seconds": round(seconds, 1),
        "device": device,
    }


def cost_line(cost: dict) -> str:
    return (
        f"{cost['participants']} participants x (1 + parts x variants = {cost['per_participant']}) = "
        f"{cost['forward_passes']:,} forward passes ({cost['records_scored']:,} distinct records scored) in "
        f"{cost['seconds'] / 60:.1f} min on {cost['device']}"
    )


def _in_order(eids: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"eid": eids}, schema={"eid": pl.Int64})


def _check_same_records(sample: pl.DataFrame, table: pl.DataFrame, config: Config) -> None:
    prepared = table.select("eid", pl.col("text").alias("prepared"))
    check = sample.select("eid", "text").join(prepared, on="eid", how="left")
    differ = check.filter(pl.col("text").is_null() | (pl.col("text") != pl.col("prepared"))).height
    if differ:
        raise CadftError(
            f"data.path={config.data.path} gives {differ} of the {sample.height} participants to explain another "
            "record than the run's prepared table has (or none): explain a run with the extract it was prepared from"
        )


def _direction_value(column: pl.Series) -> pl.Series:
    """A part's value for the direction table: numbers as they are, labels, and a history item as with/without."""
    if column.dtype == pl.List(pl.String):
        return pl.Series(column.name, np.where(column.list.len().fill_null(0).to_numpy() > 0, "with items", "none"))
    return column


def _shown_value(column: pl.Series, features: list[Feature], part: str) -> pl.Expr:
    """The value of a part as a reader of the reasons sees it: rounded as the text rounds it, with its units."""
    feature = next((f for f in features if f.name == part), None)
    if column.dtype == pl.List(pl.String):
        return pl.col(part).list.join("; ").alias(part)
    if feature is not None and feature.numeric:
        number = pl.col(part).cast(pl.Float64).round(feature.decimals)
        number = (number.cast(pl.Int64) if feature.decimals == 0 else number).cast(pl.String)
        return pl.concat_str([number, pl.lit(f" {feature.units}" if feature.units else "")]).alias(part)
    return pl.col(part).cast(pl.String).alias(part)


def _plain(value):
    return value.item() if hasattr(value, "item") else value
