"""Participant records as text, from the feature table and a template in config (`text` group).

`text` writes one sentence per feature ("The age at recruitment is 63 years."), as TabLLM found a plain
template at least as good as lists or LLM rewrites; `list` writes "- Age at recruitment: 63 years" lines.
Values are decoded labels with their units; missing values and special answers ("Prefer not to answer",
"Do not know") are dropped or stated, by option (`text.missing`, `text.special`), for numeric features too:
a numeric feature's special answer comes from its `<name>:special` column (cadft/data/features.py), and a NaN is
missing, so neither is ever written as a number. With `text.history=on` the medical history follows the features,
one item per source, as names (cadft/data/history.py). Texts are built column-wise with polars, so a full
cohort (502k records) takes seconds.
"""

from __future__ import annotations

import polars as pl

from cadft.config.schema import Text
from cadft.data.features import SPECIAL_LABELS, SPECIAL_SUFFIX, Feature
from cadft.errors import CadftError

_VALUE = "\x00"
NAME_SEPARATOR = (
    "; "  # between the names of a history item: ICD-10 titles contain commas ("Angina pectoris, unspecified")
)


class TextConfigError(CadftError):
    pass


def render_texts(table: pl.DataFrame, features: list[Feature], text_cfg: Text) -> pl.Series:
    """One record per row of `table` (which has a column per feature), written as the text group says."""
    items = [_item(feature, text_cfg, table.columns) for feature in select_features(features, text_cfg.features)]
    if text_cfg.history == "on":
        items += _history_items(text_cfg, table.columns)
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
    """The names of the features a record's text holds: text.features, or every feature (names null); and the
    history column where the table has one (it is in every record's text then, whatever text.features says)."""
    from cadft.data.history import HISTORY_COLUMN

    if names is None:
        return list(all_features)
    return [n for n in names if n in all_features] + [HISTORY_COLUMN] * (HISTORY_COLUMN in all_features)


def check_item(item: str) -> None:
    """text.item: one {value} and only the placeholders {title}, {Title}, {value}."""
    try:
        filled = item.format(title="", Title="", value=_VALUE)
    except (KeyError, IndexError, ValueError) as err:
        raise TextConfigError(
            f"text.item={item!r}: unknown placeholder {err}; use {{title}}, {{Title}}, {{value}}"
        ) from None
    if filled.count(_VALUE) != 1:
        raise TextConfigError(f"text.item={item!r} must contain {{value}} once")


def _item(feature: Feature, text_cfg: Text, columns: list[str]) -> pl.Expr:
    filled = text_cfg.item.format(title=_sentence_case(feature.title), Title=feature.title, value=_VALUE)
    before, after = filled.split(_VALUE)
    value, special = _value_text(feature, columns)
    if text_cfg.special == "drop":
        value = pl.when(special).then(None).otherwise(value)
    if text_cfg.missing == "state":
        value = value.fill_null(pl.lit(text_cfg.missing_text))
    return pl.concat_str([pl.lit(before), value, pl.lit(after)])


def _history_items(text_cfg: Text, columns: list[str]) -> list[pl.Expr]:
    """One item per history source that has a name (cadft/data/history.py), e.g. `The list of medications taken is
    aspirin.`"""
    from cadft.data.history import SOURCES, name_column

    absent = [name_column(source) for source in SOURCES if name_column(source) not in columns]
    if absent:
        raise TextConfigError(
            f"text.history=on, but the table lacks the history column(s) {', '.join(absent)} "
            "(cadft.data.history.build_history makes them)"
        )
    items = []
    for source in SOURCES:
        before, after = text_cfg.item.format(
            title=_sentence_case(source.title), Title=source.title, value=_VALUE
        ).split(_VALUE)
        names = pl.col(name_column(source)).list.join(NAME_SEPARATOR)
        items.append(pl.concat_str([pl.lit(before), names, pl.lit(after)]))  # null (no names): no item
    return items


def _value_text(feature: Feature, columns: list[str]) -> tuple[pl.Expr, pl.Expr]:
    """(the value as written, whether it is a special answer)."""
    column = pl.col(feature.name)
    if not feature.numeric:
        return column, column.is_in(list(SPECIAL_LABELS))
    number = column.cast(pl.Float64).fill_nan(None)
    text = (
        number.round(0).cast(pl.Int64).cast(pl.String)
        if feature.decimals == 0
        else number.round(feature.decimals).cast(pl.String)
    )
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
