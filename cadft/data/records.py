"""The records of new people (cadft predict): eid and text of every participant of an extract, without labels, built
exactly as a run built its own (record_table: with the columns the text is written from)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cadft.config.schema import Data, Task, Text
from cadft.data.features import build_features, fallback_fields, parse_features, required_fields
from cadft.data.history import build_history, history_fields
from cadft.data.task import Definition
from cadft.data.text import render_texts
from cadft.data.ukb.read import read_extract
from cadft.data.ukb.withdrawals import drop_withdrawn, read_withdrawals


def records_from_extract(data: Data, text: Text, task: Task, withdrawals: Path | None = None) -> pl.DataFrame:
    """eid and text of every participant of `data.path`, with the run's data.features, text and task settings (the
    history leaves out the task's outcome codes). Participants in the run's data.withdrawals or in `withdrawals`, and
    negative eids, are dropped first."""
    return record_table(data, text, task, withdrawals).select("eid", "text")


def record_table(data: Data, text: Text, task: Task, withdrawals: Path | None = None) -> pl.DataFrame:
    """The records of records_from_extract with what their text is written from: each feature's column (and a
    number's `<name>:special`) and, with text.history=on, the history's name lists (explanations write the text again
    with a part taken out; cadft predict writes it in other feature orders, eval.test_time_orders)."""
    features = parse_features(data.features)
    with_history = text.history == "on"
    withdrawn = read_withdrawals(data.withdrawals) | read_withdrawals(withdrawals)
    extract = read_extract(
        data.path,
        required_fields(features),
        fmt=data.format,
        max_bad_fraction=data.max_bad_fraction,
        optional_ids=(*fallback_fields(features), *(history_fields() if with_history else ())),
        encoding=data.encoding,
    )
    extract, _ = drop_withdrawn(extract, withdrawn)
    table = build_features(extract, features)
    if with_history:
        table = table.join(
            build_history(extract, Definition.from_config(task), text.history_max_items)[0], on="eid", how="left"
        )
    return table.with_columns(render_texts(table, features, text)).sort("eid")
