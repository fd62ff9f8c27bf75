"""Hash split by participant: stratified, disjoint, stable, independent of row order."""

from __future__ import annotations

import polars as pl
import pytest

from cadft.split import SplitConfigError, assign_splits

FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}


def _table(n=10_000, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return pl.DataFrame({"eid": rng.choice(np.arange(1_000_000, 6_000_000), n, replace=False), "label": (rng.random(n) < 0.04).astype("int8")})


def test_stratified_and_exact():
    table = _table()
    table = table.with_columns(assign_splits(table, FRACTIONS, "s"))
    counts = table.group_by("split", "label").len().sort("split", "label")
    cases = table["label"].sum()
    by = {(r["split"], r["label"]): r["len"] for r in counts.iter_rows(named=True)}
    assert abs(by[("train", 1)] - 0.7 * cases) <= 1 and abs(by[("test", 1)] - 0.15 * cases) <= 1
    assert abs(by[("train", 0)] - 0.7 * (len(table) - cases)) <= 1


def test_stable_across_row_order_and_runs():
    table = _table()
    first = table.with_columns(assign_splits(table, FRACTIONS, "s"))
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=3)
    second = shuffled.with_columns(assign_splits(shuffled, FRACTIONS, "s"))
    assert first.sort("eid").equals(second.sort("eid"))
    assert first["eid"].n_unique() == len(first)  # each participant in exactly one split


def test_salt_changes_the_split():
    table = _table(1000)
    a, b = assign_splits(table, FRACTIONS, "one"), assign_splits(table, FRACTIONS, "two")
    assert (a != b).sum() > 100


@pytest.mark.parametrize("fractions", [{"train": 0.8, "validation": 0.3, "test": 0.1}, {"train": 0.9, "test": 0.1}, {"train": 0.5, "valid": 0.25, "test": 0.25}])
def test_bad_fractions(fractions):
    with pytest.raises(SplitConfigError, match="data.split.fractions"):
        assign_splits(_table(100), fractions, "s")
