"""Clinical categories beside numbers in the record text (`text.categories`: feature -> scheme), e.g. "The systolic
blood pressure is 152 mmHg (stage 2 hypertension).".

The schemes are published cut points kept as data with their source (cadft/data/cut_points.yaml), never derived from
the label. A category is a fixed, monotone function of the value (HDL's also of sex), so it adds no information a
baseline given the number lacks; it only says in words what a language model would otherwise have to infer from
digits, which SmolLM2's and Gemma's tokenizers split one by one. The category is computed on the value as the text
writes it (rounded to the feature's decimals), so a record never shows "140 mmHg (stage 1 hypertension)".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl
import yaml

from cadft.errors import CadftError

CUT_POINTS_FILE = Path(__file__).with_name("cut_points.yaml")


@dataclass(frozen=True)
class Band:
    label: str
    bound: float | None = None  # None: the first band
    strict: bool = False  # the band starts above the bound (True) or at it (False)


@dataclass(frozen=True)
class Scheme:
    name: str
    source: str
    units: str
    bands: dict[str | None, tuple[Band, ...]]  # by label of the `by` feature; key None when the scheme has no `by`
    by: str | None = None  # a feature whose label picks the bands (sex)


@cache
def schemes() -> dict[str, Scheme]:
    """Every scheme of cut_points.yaml, checked: bands in increasing order, the first without a bound."""
    raw = yaml.safe_load(CUT_POINTS_FILE.read_text())["schemes"]
    return {name: _scheme(name, spec) for name, spec in raw.items()}


def _scheme(name: str, spec: dict) -> Scheme:
    by = spec.get("by")
    grouped = spec["bands"] if by else {None: spec["bands"]}
    bands = {}
    for key, items in grouped.items():
        parsed = tuple(
            Band(str(item["label"]), item.get("at_least", item.get("above")), "above" in item) for item in items
        )
        bounds = [band.bound for band in parsed[1:]]
        if parsed[0].bound is not None or None in bounds or bounds != sorted(bounds):
            raise ValueError(f"{CUT_POINTS_FILE}: scheme {name}: bands must rise, the first without a bound")
        bands[key] = parsed
    return Scheme(name, str(spec["source"]), str(spec["units"]), bands, by)


def check_categories(categories: dict[str, str] | None, features: list, written: list[str]) -> None:
    """text.categories: known schemes, on numeric features whose units match; a scheme read by another feature (HDL by
    sex) needs that feature written in the text too, or the category would tell the model something the baselines on
    equal terms do not see."""
    if not categories:
        return
    by_name = {feature.name: feature for feature in features}
    known = schemes()
    for name, scheme_name in categories.items():
        if scheme_name not in known:
            raise CadftError(
                f"text.categories.{name}={scheme_name}: no such scheme in {CUT_POINTS_FILE.name} "
                f"(known: {', '.join(known)})"
            )
        feature = by_name.get(name)
        if feature is None or not feature.numeric:
            raise CadftError(f"text.categories.{name}: categories need a numeric feature of data.features")
        scheme = known[scheme_name]
        if scheme.units != feature.units:
            raise CadftError(
                f"text.categories.{name}={scheme_name}: the scheme's cut points are in {scheme.units}, the feature "
                f"is in {feature.units or 'no units'}"
            )
        if scheme.by and name in written and scheme.by not in written:
            raise CadftError(
                f"text.categories.{name}={scheme_name} depends on {scheme.by}, which text.features does not write: "
                f"the category would carry {scheme.by} into the text; add {scheme.by} or choose another scheme"
            )


def category(rounded: pl.Expr, scheme: Scheme) -> pl.Expr:
    """The category label of each (already rounded) value; null where the value is missing or `by` is unknown."""
    if scheme.by is None:
        return _banded(rounded, scheme.bands[None])
    by = pl.col(scheme.by)
    expression = pl.when(pl.lit(False)).then(pl.lit(None, pl.String))
    for key, bands in scheme.bands.items():
        expression = expression.when(by == key).then(_banded(rounded, bands))
    return expression.otherwise(None)


def _banded(value: pl.Expr, bands: tuple[Band, ...]) -> pl.Expr:
    expression = pl.when(value.is_null()).then(pl.lit(None, pl.String))
    for band in reversed(bands[1:]):
        expression = expression.when(value > band.bound if band.strict else value >= band.bound).then(
            pl.lit(band.label)
        )
    return expression.otherwise(pl.lit(bands[0].label))
