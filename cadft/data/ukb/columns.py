"""Column names of the extract formats UK Biobank ships, and detecting the format from a header.

Every format names a value by (field, instance, array):
  showcase  `eid`, `21003-0.0`, `41270-0.258`              (ukbconv CSV)
  tab       `f.eid`, `f.21003.0.0`                        (ukbconv R .tab)
  rap       `eid`, `p31`, `p21003_i0`, `p4080_i0_a1`, `p41280_a12`, optional `participant.` prefix
            (Research Analysis Platform Table Exporter / dx extract_dataset)
Parquet files use either naming, so their format is detected from their column names too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAMINGS = ("showcase", "tab", "rap")

_PATTERNS = {
    "showcase": re.compile(r"^(\d+)-(\d+)\.(\d+)$"),
    "tab": re.compile(r"^f\.(\d+)\.(\d+)\.(\d+)$"),
    "rap": re.compile(r"^(?:participant\.)?p(\d+)(?:_i(\d+))?(?:_a(\d+))?$"),
}
_EID_NAMES = {"showcase": ("eid",), "tab": ("f.eid",), "rap": ("eid", "participant.eid")}


@dataclass(frozen=True)
class ColumnKey:
    """Where a column's values belong: field, instance (None where RAP stores none) and array slot
    (None for a RAP single-cell multi-select or a field without arrays)."""

    field: int
    instance: int | None
    array: int | None


def parse_column(name: str, naming: str) -> ColumnKey | None:
    """The (field, instance, array) a column holds, or None when the name is not a field column."""
    match = _PATTERNS[naming].match(name)
    if not match:
        return None
    field, instance, array = match.groups()
    return ColumnKey(int(field), None if instance is None else int(instance), None if array is None else int(array))


def eid_column(header: list[str], naming: str) -> str | None:
    for name in _EID_NAMES[naming]:
        if name in header:
            return name
    return None


def detect_naming(header: list[str]) -> str | None:
    """The naming whose eid column and field columns the header uses; None when no naming fits."""
    best, best_count = None, 0
    for naming in NAMINGS:
        if eid_column(header, naming) is None:
            continue
        count = sum(parse_column(name, naming) is not None for name in header)
        if count > best_count:
            best, best_count = naming, count
    return best


def showcase_name(field: int, instance: int, array: int) -> str:
    return f"{field}-{instance}.{array}"


def tab_name(field: int, instance: int, array: int) -> str:
    return f"f.{field}.{instance}.{array}"


def rap_name(field: int, instance: int | None, array: int | None) -> str:
    name = f"p{field}"
    if instance is not None:
        name += f"_i{instance}"
    if array is not None:
        name += f"_a{array}"
    return name
