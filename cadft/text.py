"""Participant records as text, from the feature table and a template in config (`text` group).

`text` writes one sentence per feature ("The age at recruitment is 63 years."), as TabLLM found a plain
template at least as good as lists or LLM rewrites; `list` writes "- Age at recruitment: 63 years" lines.
Values are decoded labels with their units; missing values and special answers ("Prefer not to answer",
"Do not know") are dropped or stated, by option (`text.missing`, `text.special`), for numeric features too:
a numeric feature's special answer comes from its `<name>:special` column (cadft/features.py), and a NaN is
missing, so neither is ever written as a number. Texts are built column-wise with polars, so a full
cohort (502k records) takes seconds.
"""

from __future__ import annotations

import polars as pl

from cadft.features import SPECIAL_LABELS, SPECIAL_SUFFIX, Feature
from cadft.errors import CadftError

_VALUE = "\x00"


class TextConfigError(CadftError):
    pass


def render_texts(table: pl.DataFrame, features: list[Feature], text_cfg) -> pl.Series:
    """One record per row of `table` (which has a column per feature); text_cfg is checked (cadft.config)."""
    items = [_item(feature, text_cfg, table.columns) for feature in select_features(features, text_cfg.get("features"))]
    body = pl.concat_str(items, separator=text_cfg.separator, ignore_nulls=True)
    record = pl.concat_str([pl.lit(text_cfg.prefix or ""), body]) if text_cfg.prefix else body
    return table.select(record.alias("text")).to_series()


def select_features(features: list[Feature], names) -> list[Feature]:
    """The features written into the text: all (names null) or the named ones, in the given order."""
    if names is None:
        return features
    by_name = {f.name: f for f in features}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise TextConfigError(f"text.features names {unknown}, which are not in data.features ({', '.join(by_name)})")
    return [by_name[n] for n in names]


def text_feature_names(all_features: list[str], names) -> list[str]:
    """The names of the features a record's text holds: text.features, or every feature (names null)."""
    return list(all_features) if names is None else [n for n in names if n in all_features]


def check_item(item: str) -> None:
    """text.item: one {value} and only the placeholders {title}, {Title}, {value}."""
    try:
        filled = item.format(title="", Title="", value=_VALUE)
    except (KeyError, IndexError, ValueError) as err:
        raise TextConfigError(f"text.item={item!r}: unknown placeholder {err}; use {{title}}, {{Title}}, {{value}}") from None
    if filled.count(_VALUE) != 1:
        raise TextConfigError(f"text.item={item!r} must contain {{value}} once")


def _item(feature: Feature, text_cfg, columns: list[str]) -> pl.Expr:
    filled = text_cfg.item.format(title=_sentence_case(feature.title), Title=feature.title, value=_VALUE)
    before, after = filled.split(_VALUE)
    value, special = _value_text(feature, columns)
    if text_cfg.special == "drop":
        value = pl.when(special).then(None).otherwise(value)
    if text_cfg.missing == "state":
        value = value.fill_null(pl.lit(text_cfg.missing_text))
    return pl.concat_str([pl.lit(before), value, pl.lit(after)])


def _value_text(feature: Feature, columns: list[str]) -> tuple[pl.Expr, pl.Expr]:
    """(the value as written, whether it is a special answer)."""
    column = pl.col(feature.name)
    if not feature.numeric:
        return column, column.is_in(list(SPECIAL_LABELS))
    number = column.cast(pl.Float64).fill_nan(None)
    text = number.round(0).cast(pl.Int64).cast(pl.String) if feature.decimals == 0 else number.round(feature.decimals).cast(pl.String)
    if feature.units:
        text = pl.concat_str([text, pl.lit(f" {feature.units}")])
    special_column = feature.name + SPECIAL_SUFFIX
    if special_column not in columns:
        return text, pl.lit(False)
    special = number.is_null() & pl.col(special_column).is_not_null()
    return pl.when(special).then(pl.col(special_column)).otherwise(text), special


def _sentence_case(title: str) -> str:
    """'Age at recruitment' -> 'age at recruitment'; acronyms ('HDL cholesterol') stay as written."""
    if len(title) > 1 and title[1].isupper():
        return title
    return title[:1].lower() + title[1:]
