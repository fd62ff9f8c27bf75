"""Leak-free train/validation/test split by participant, stable across runs, machines and sweeps.

Each eid is hashed (BLAKE2b with a salt from config, so it does not depend on Python's hash seed or
on row order); within each label, participants are ranked by hash and cut at the configured fractions.
So the split is stratified exactly, a participant is in exactly one split, and the same cohort always
splits the same way.
"""

from __future__ import annotations

import hashlib

import polars as pl
from cadft.errors import CadftError

SPLITS = ("train", "validation", "test")


class SplitConfigError(CadftError):
    pass


def check_fractions(fractions) -> dict[str, float]:
    values = {name: float(fractions.get(name, 0.0)) for name in SPLITS}
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise SplitConfigError(f"data.split.fractions has unknown split(s) {sorted(unknown)}; allowed: {', '.join(SPLITS)}")
    if any(v <= 0 for v in values.values()) or abs(sum(values.values()) - 1.0) > 1e-6:
        raise SplitConfigError(f"data.split.fractions={values}: each must be > 0 and they must sum to 1")
    return values


def eid_hash(eids: pl.Series, salt: str) -> pl.Series:
    digests = [int.from_bytes(hashlib.blake2b(f"{salt}:{e}".encode(), digest_size=8).digest(), "big") for e in eids.to_list()]
    return pl.Series("hash", digests, dtype=pl.UInt64)


def assign_splits(table: pl.DataFrame, fractions, salt: str) -> pl.Series:
    """The split of each row of `table` (columns eid, label), in row order."""
    fr = check_fractions(fractions)
    cut_train, cut_val = fr["train"], fr["train"] + fr["validation"]
    ranked = table.select("eid", "label").with_columns(eid_hash(table["eid"], salt)).with_columns(
        ((pl.col("hash").rank("ordinal").over("label") - 1) / pl.len().over("label")).alias("position")
    )
    split = (
        pl.when(pl.col("position") < cut_train).then(pl.lit("train"))
        .when(pl.col("position") < cut_val).then(pl.lit("validation"))
        .otherwise(pl.lit("test"))
    )
    return ranked.select(split.alias("split")).to_series()
