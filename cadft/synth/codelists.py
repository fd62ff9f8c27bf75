"""Per-person lists of codes (and their dates) gathered entry by entry, then laid out as UKB array fields.

UK Biobank lists each code once per person (41270 holds distinct codes; 41280 the date of the first
diagnosis with that code), so duplicates collapse to their earliest date. Lists follow the order of the
vocabulary they were declared with, and are cut at the field's array width as a release would.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import yaml

CODES_FILE = Path(__file__).with_name("codes.yaml")
NO_DAY = np.iinfo(np.int64).max  # "never" / "no date" in day-number arrays
PLACEHOLDER_DAY = np.datetime64("1900-01-01", "D").astype(np.int64)  # UKB's "date unknown"


@lru_cache(maxsize=1)
def code_tables() -> dict:
    """codes.yaml with every code as UKB stores it (no dot); titles keep the dotted form for REPLACE."""
    raw = yaml.safe_load(CODES_FILE.read_text())

    def undotted(table: dict) -> dict:
        return {str(code).replace(".", ""): value for code, value in table.items()}

    replace_labels = {
        system: {str(code).replace(".", ""): f"{code} {title}" for code, title in titles.items()}
        for system, titles in raw["titles"].items()
    }
    return {
        "labels": replace_labels,
        "background": {system: undotted(table) for system, table in raw["background"].items()},
        "deaths": {role: undotted(table) for role, table in raw["deaths"].items()},
    }


class CodeList:
    """Entries (person, code, day) for one field; `vocabulary` fixes the in-list order."""

    def __init__(self, vocabulary: list, dated: bool):
        self.vocabulary = np.array(vocabulary)
        self._index = {code: i for i, code in enumerate(vocabulary)}
        self.dated = dated
        self._people: list[np.ndarray] = []
        self._codes: list[np.ndarray] = []
        self._days: list[np.ndarray] = []

    def add(self, people: np.ndarray, code, days: np.ndarray | None = None) -> None:
        """Add `code` (one code, or one per person) for `people` (indices), dated by `days` when dated."""
        people = np.asarray(people, dtype=np.int64)
        if people.size == 0:
            return
        if np.ndim(code) == 0:
            codes = np.full(people.size, self._index[code], dtype=np.int32)
        else:
            codes = np.array([self._index[c] for c in np.unique(code)], dtype=np.int32)[
                np.unique(code, return_inverse=True)[1]
            ]
        if self.dated:
            if days is None:
                raise ValueError("a dated code list needs a day for every entry")
            self._days.append(np.broadcast_to(np.asarray(days, dtype=np.int64), people.shape))
        self._people.append(people)
        self._codes.append(codes)

    def assemble(self, n: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Offsets (n + 1), code indices and days of the distinct, ordered, width-capped lists."""
        people = np.concatenate(self._people) if self._people else np.zeros(0, np.int64)
        codes = np.concatenate(self._codes) if self._codes else np.zeros(0, np.int32)
        days = np.concatenate(self._days) if self.dated and self._days else np.zeros(people.size, np.int64)
        order = np.lexsort((days, codes, people))
        people, codes, days = people[order], codes[order], days[order]
        first = np.ones(people.size, dtype=bool)
        first[1:] = (people[1:] != people[:-1]) | (codes[1:] != codes[:-1])
        people, codes, days = people[first], codes[first], days[first]
        starts = np.searchsorted(people, people, side="left")
        keep = np.arange(people.size) - starts < width
        people, codes, days = people[keep], codes[keep], days[keep]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(people, minlength=n), out=offsets[1:])
        return offsets, codes, (days if self.dated else None)


def list_series(offsets: np.ndarray, values: pa.Array) -> pl.Series:
    """A polars List series from CSR offsets; people with an empty list get null (no answer)."""
    counts = np.diff(offsets)
    mask = pa.array(counts == 0)
    array = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values, mask=mask)
    return pl.Series(array)


def date_values(days: np.ndarray) -> pa.Array:
    """Day numbers to an Arrow date array; NO_DAY becomes null."""
    missing = days == NO_DAY
    return pa.array(np.where(missing, 0, days).astype(np.int32), type=pa.date32(), mask=missing)
