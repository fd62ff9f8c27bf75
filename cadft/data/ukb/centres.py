"""UK Biobank assessment centres (field 54, coding 10) and the country each lies in: the one place cadft maps a
centre to England, Scotland or Wales (split by place, per-country follow-up).

Cardiff, Swansea and Wrexham are in Wales, Edinburgh and Glasgow in Scotland, every other centre (the
Stockport pilot included) in England (shared ukb_reference.md sections 2 and 3).
"""

from __future__ import annotations

import polars as pl

from cadft.data.ukb.registry import get_field

CENTRE_FIELD = 54
COUNTRIES = ("England", "Scotland", "Wales")
WALES_CENTRES = (11003, 11022, 11023)  # Cardiff, Swansea, Wrexham
SCOTLAND_CENTRES = (11004, 11005)  # Glasgow, Edinburgh
_NOT_ENGLAND = dict.fromkeys(WALES_CENTRES, "Wales") | dict.fromkeys(SCOTLAND_CENTRES, "Scotland")


def centre_names() -> dict[int, str]:
    """Centre code -> name (coding 10, from the field registry)."""
    return dict(get_field(CENTRE_FIELD).labels)


def country_of_centre(code: int) -> str:
    """The country of an assessment centre code; KeyError for a code not in coding 10."""
    if int(code) not in centre_names():
        raise KeyError(f"{code} is not a UK Biobank assessment centre (field {CENTRE_FIELD}, coding 10)")
    return _NOT_ENGLAND.get(int(code), "England")


def country_expr(centre: pl.Expr) -> pl.Expr:
    """A centre code column as its country (null for a missing or unknown code)."""
    countries = {code: country_of_centre(code) for code in centre_names()}
    return centre.replace_strict(countries, default=None, return_dtype=pl.String)
