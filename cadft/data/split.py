"""Leak-free train/validation/test split by participant, stable across runs, machines, sweeps and tasks.

Each eid is hashed (BLAKE2b with a salt from config, so it does not depend on Python's hash seed); its position
hash / 2^64 in [0, 1) is cut at the configured fractions. So a participant's split depends only on its eid and the
salt: never on the task, the label, the cohort's exclusions or the extract's row order, and the same participant is
in the same split for every task (the split is not stratified by label; with tens of thousands of participants the
case fractions per split differ by chance only).

Split by place (`data.split.by=centre|country`): the participants of the assessment centres or countries in
`data.split.test_groups` form the test split, and everyone else is cut into train and validation by the same hash
position at the train:validation ratio of the fractions (the test fraction is then unused). The held-out place is
never used for any choice: checkpoints, recalibration and thresholds are chosen on validation, drawn from the
other places.
"""

from __future__ import annotations

import hashlib

import polars as pl

from cadft.data.ukb.centres import CENTRE_FIELD, COUNTRIES, centre_names, country_expr
from cadft.errors import CadftError

SPLITS = ("train", "validation", "test")
BY = ("eid", "centre", "country")
PLURAL = {"centre": "centres", "country": "countries"}


class SplitConfigError(CadftError):
    pass


def check_fractions(fractions) -> dict[str, float]:
    values = {name: float(fractions.get(name, 0.0)) for name in SPLITS}
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise SplitConfigError(
            f"data.split.fractions has unknown split(s) {sorted(unknown)}; allowed: {', '.join(SPLITS)}"
        )
    if any(v <= 0 for v in values.values()) or abs(sum(values.values()) - 1.0) > 1e-6:
        raise SplitConfigError(f"data.split.fractions={values}: each must be > 0 and they must sum to 1")
    return values


def held_out_groups(split) -> list:
    """`data.split.test_groups` checked against `data.split.by`: centre codes (coding 10; a centre's name such as
    Cardiff is read as its code) or country names; empty for a split by eid."""
    by, groups = split.by, list(split.test_groups or [])
    if by not in BY:
        raise SplitConfigError(f"data.split.by={by}; allowed: {', '.join(BY)}")
    if by == "eid":
        if groups:
            raise SplitConfigError(
                f"data.split.test_groups={groups} needs data.split.by=centre or country (data.split.by=eid "
                "splits by hash)"
            )
        return []
    if not groups:
        raise SplitConfigError(
            f"data.split.by={by} needs data.split.test_groups: the {by} group(s) that form the test split, e.g. "
            + ("[Wales]" if by == "country" else "[11009] or [Newcastle]")
        )
    if by == "country":
        unknown = [g for g in groups if g not in COUNTRIES]
        if unknown:
            raise SplitConfigError(
                f"data.split.test_groups: {unknown} are not countries; allowed: {', '.join(COUNTRIES)}"
            )
        return list(dict.fromkeys(groups))
    names = centre_names()
    codes = {name.lower(): code for code, name in names.items()}
    unknown = [g for g in groups if not (isinstance(g, int) and g in names) and str(g).lower() not in codes]
    if unknown:
        raise SplitConfigError(
            f"data.split.test_groups: {unknown} are not assessment centres (field {CENTRE_FIELD}, coding 10); allowed: "
            + ", ".join(f"{code} {name}" for code, name in names.items())
        )
    return list(dict.fromkeys(g if isinstance(g, int) else codes[str(g).lower()] for g in groups))


def place_of(scalars: pl.DataFrame, by: str) -> pl.DataFrame:
    """eid and `group`: the participant's assessment centre code (field 54) or its country."""
    centre = pl.col(f"f{CENTRE_FIELD}")
    return scalars.select("eid", (country_expr(centre) if by == "country" else centre).alias("group"))


def eid_hash(eids: pl.Series, salt: str) -> pl.Series:
    digests = [
        int.from_bytes(hashlib.blake2b(f"{salt}:{e}".encode(), digest_size=8).digest(), "big") for e in eids.to_list()
    ]
    return pl.Series("hash", digests, dtype=pl.UInt64)


def position(eids: pl.Series, salt: str) -> pl.Series:
    """Each eid's place in [0, 1): its salted hash / 2^64."""
    return (eid_hash(eids, salt).cast(pl.Float64) / 2.0**64).alias("position")


def assign_splits(table: pl.DataFrame, fractions, salt: str, held_out: pl.Series | None = None) -> pl.Series:
    """The split of each row of `table` (a column eid), in row order. `held_out` (booleans, one per row): the rows of
    the test places of a split by place; they are the test split and the others are cut into train and validation."""
    fr = check_fractions(fractions)
    at = position(table["eid"], salt)
    if held_out is None:
        cut_train, cut_val = fr["train"], fr["train"] + fr["validation"]
        test = pl.Series([False] * table.height)
    else:
        cut_train, cut_val = fr["train"] / (fr["train"] + fr["validation"]), 2.0  # nobody else reaches test
        test = held_out.fill_null(False)
    frame = pl.DataFrame({"position": at, "test": test})
    split = (
        pl.when(pl.col("test"))
        .then(pl.lit("test"))
        .when(pl.col("position") < cut_train)
        .then(pl.lit("train"))
        .when(pl.col("position") < cut_val)
        .then(pl.lit("validation"))
        .otherwise(pl.lit("test"))
    )
    return frame.select(split.alias("split")).to_series()


def split_cohort(table: pl.DataFrame, split, places: pl.DataFrame | None = None) -> tuple[pl.Series, dict]:
    """The split of each row of a cohort (column eid) under `data.split`, and what the data card says about it.
    `places` (eid, group from `place_of`) is needed for a split by place; every test group must have participants
    in the cohort, and so must the other places."""
    by, groups = split.by, held_out_groups(split)
    card = {"by": by, "salt": str(split.salt)}
    if by == "eid":
        return assign_splits(table, split.fractions, split.salt), card
    group = table.select("eid").join(places, on="eid", how="left")["group"]
    sizes = dict(sorted(group.drop_nulls().value_counts().iter_rows(), key=lambda row: str(row[0])))
    absent = [g for g in groups if g not in sizes]
    if absent:
        raise SplitConfigError(
            f"data.split.test_groups: {absent} have no participants in the cohort; {PLURAL[by]} present: "
            f"{', '.join(f'{g} ({n})' for g, n in sizes.items()) or 'none (is field 54 empty?)'}"
        )
    held_out = group.is_in(groups)
    if held_out.fill_null(False).all():
        raise SplitConfigError(
            f"data.split.test_groups={groups} hold the whole cohort: nobody is left to train and validate on"
        )
    card |= {
        "test_groups": groups,
        "participants_by_group": {str(g): n for g, n in sizes.items()},
        "no_" + by: int(group.null_count()),
    }
    return assign_splits(table, split.fractions, split.salt, held_out), card
