"""Clinically relevant subgroups of the test split: sex, age band, ethnic group and Townsend deprivation quintile.

Ethnic background (field 21000, coding 1001) is grouped by its top-level code (1001 British -> 1 White, 3002
Pakistani -> 3 Asian or Asian British, ...), read from the field registry rather than typed here. Townsend
quintiles are cut at the test split's own quintiles (label-free, the same for every model on that split):
Q1 least deprived ... Q5 most deprived.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl

from cadft.data.ukb.registry import get_field

SUBGROUP_COLUMNS = ("sex", "age", "ethnicity", "townsend")  # prepared-table columns subgroups are cut by, where present
ETHNICITY_FIELD = 21000


def ethnic_group_labels() -> dict[str, str]:
    """Ethnic background label -> its group's label ("Indian" -> "Asian or Asian British"); special answers ->
    "Unknown"."""
    labels = get_field(ETHNICITY_FIELD).labels
    return {
        label: labels[code // 1000 if code >= 1000 else code] if code > 0 else "Unknown"
        for code, label in labels.items()
    }


def subgroup_masks(frame: pl.DataFrame, age_bands: tuple[float, ...]) -> dict[str, dict[str, np.ndarray]]:
    """group -> {name: boolean mask over the frame's rows}, for the subgroup columns the frame has; empty groups left
    out."""
    groups = {}
    if "sex" in frame.columns:
        groups["sex"] = _by_value(frame["sex"].cast(pl.String))
    if "age" in frame.columns and age_bands:
        age = frame["age"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        edges = (-math.inf, *age_bands, math.inf)
        groups["age"] = {_band_name(low, high): (age >= low) & (age < high) for low, high in itertools.pairwise(edges)}
    if "ethnicity" in frame.columns:
        groups["ethnicity"] = _by_value(
            frame["ethnicity"].cast(pl.String).replace_strict(ethnic_group_labels(), default="Unknown")
        )
    if "townsend" in frame.columns:
        townsend = frame["townsend"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        measured = townsend[~np.isnan(townsend)]
        if measured.size >= 5:
            edges = (-math.inf, *np.quantile(measured, [0.2, 0.4, 0.6, 0.8]), math.inf)
            names = ("Q1_least_deprived", "Q2", "Q3", "Q4", "Q5_most_deprived")
            groups["townsend"] = {
                name: (townsend > low) & (townsend <= high) for name, low, high in zip(names, edges[:-1], edges[1:])
            }
    return {group: {name: mask for name, mask in masks.items() if mask.any()} for group, masks in groups.items()}


def _by_value(values: pl.Series) -> dict[str, np.ndarray]:
    return {
        value: (values == value).fill_null(False).to_numpy() for value in sorted(values.drop_nulls().unique().to_list())
    }


def _band_name(low: float, high: float) -> str:
    if low == -math.inf:
        return f"under_{high:g}"
    return f"{low:g}_plus" if high == math.inf else f"{low:g}-{high:g}"
