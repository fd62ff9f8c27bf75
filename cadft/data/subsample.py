"""The training records a run uses: a subsample of the prepared table's training split (train.max_train_examples,
train.subsample), or the whole split (train.subsample=none, or max_train_examples null), the same rows for the language
model and the equal-terms baselines."""

from __future__ import annotations

import polars as pl

from cadft.config.schema import Config


def subsample(table: pl.DataFrame, limit: int | None, seed: int, method: str = "stratified") -> pl.DataFrame:
    """At most `limit` rows, or the table itself. `stratified` keeps the case fraction; `all_cases` keeps every
    case (up to the limit) and fills with random controls: a case-control sample, more signal per step when
    compute is short, at the price of calibration (predicted risks come out too high; ranking is unaffected).
    `none` keeps the whole table whatever the limit. Method and limit are checked with the config
    (cadft.config.schema)."""
    if limit is None or method == "none" or table.height <= limit:
        return table
    if method == "all_cases":
        cases = table.filter(pl.col("label") == 1)
        cases = cases.sample(n=min(limit, cases.height), seed=seed)
        controls = table.filter(pl.col("label") == 0)
        return pl.concat([cases, controls.sample(n=min(limit - cases.height, controls.height), seed=seed)]).sort("eid")
    fraction = limit / table.height
    parts = [
        part.sample(n=max(1, round(part.height * fraction)), seed=seed)
        for _, part in table.group_by("label", maintain_order=True)
    ]
    return pl.concat(parts).sort("eid")


def training_records(table: pl.DataFrame, config: Config) -> pl.DataFrame:
    """The training split's rows a run trains on (train.max_train_examples, train.subsample, seed): the same rows,
    in the same order, for cadft train, cadft eval and the equal-terms baselines."""
    return subsample(
        table.filter(pl.col("split") == "train"), config.train.max_train_examples, config.seed, config.train.subsample
    )
