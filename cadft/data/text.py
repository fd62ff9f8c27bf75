"""Participant records as text, from the feature table and a template in config (`text` group).

`text` writes one sentence per feature ("The age at recruitment is 63 years."), as TabLLM found a plain
template at least as good as lists or LLM rewrites; `list` writes "- Age at recruitment: 63 years" lines.
Values are decoded labels with their units; missing values and special answers ("Prefer not to answer",
"Do not know") are dropped or stated, by option (`text.missing`, `text.special`), for numeric features too:
a numeric feature's special answer comes from its `<name>:special` column (cadft/data/features.py), and a NaN is
missing, so neither is ever written as a number. With `text.history=on` the medical history follows the features,
one item per source, as names (cadft/data/history.py). Texts are built column-wise with polars, so a full
cohort (502k records) takes seconds.

`compact` writes "age 63 years; sex Male; systolic BP 142 mmHg; ..." (short titles from `text.titles`): the fewest
tokens. `text.categories` adds a numeric value's clinical category from published cut points beside it
("142 mmHg (stage 2 hypertension)"; cadft/data/categories.py). Every serialization writes the same features, so each
carries exactly what the baselines on equal terms see.

Feature order: the prepared table's `text` has the features in config order. `render_texts(..., order=k)` writes
each record's features in an order of its own, drawn from (seed, k, eid) alone (the same person gets the same order
whoever else is rendered with them); training can shuffle them per record (train.shuffle_feature_order) and
scoring can average over K orders (eval.test_time_orders). Those texts are rendered when they are needed, from the
prepared table's feature columns (cadft.data.prepare keeps the numeric features' special answers for this), so the
cache holds one text per record whatever K is and the orders never depend on the cache.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from cadft.config.schema import Text
from cadft.data.categories import category, check_categories, schemes
from cadft.data.features import SPECIAL_LABELS, SPECIAL_SUFFIX, Feature
from cadft.errors import CadftError

_VALUE = "\x00"
NAME_SEPARATOR = (
    "; "  # between the names of a history item: ICD-10 titles contain commas ("Angina pectoris, unspecified")
)


class TextConfigError(CadftError):
    pass


def render_texts(
    table: pl.DataFrame, features: list[Feature], text_cfg: Text, *, order: int | None = None, seed: int = 0
) -> pl.Series:
    """One record per row of `table` (which has a column per feature), written as the text group says. `order`: None,
    the features in config order; k, each record's features in the order drawn from (seed, k, its eid), the history
    after them as always."""
    written = select_features(features, text_cfg.features)
    items = [_item(feature, text_cfg, table.columns) for feature in written]
    history = _history_items(text_cfg, table.columns) if text_cfg.history == "on" else []
    if order is None:
        body = pl.concat_str(items + history, separator=text_cfg.separator, ignore_nulls=True)
    else:
        _check_reorderable(written, table.columns)
        permutations = pl.Series(
            feature_orders(table["eid"].to_numpy(), len(items), seed, order), dtype=pl.List(pl.UInt32)
        )
        shuffled = pl.concat_list(items).list.gather(permutations)
        body = pl.concat_list([shuffled, *history]).list.drop_nulls().list.join(text_cfg.separator)
    record = pl.concat_str([pl.lit(text_cfg.prefix or ""), body]) if text_cfg.prefix else body
    return table.select(record.alias("text")).to_series()


def feature_orders(eids: np.ndarray, n_items: int, seed: int, order: int) -> np.ndarray:
    """(len(eids), n_items) permutations, row i a function of (seed, order, eids[i]) alone: a counter-based hash
    (splitmix64) per (record, item), sorted."""
    with np.errstate(over="ignore"):
        key = _mix(_mix(np.asarray(eids).astype(np.uint64) ^ np.uint64(seed % 2**64)) ^ np.uint64(order % 2**64))
        draws = _mix(key[:, None] ^ np.arange(n_items, dtype=np.uint64)[None, :])
    return np.argsort(draws, axis=1, kind="stable").astype(np.uint32)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _check_reorderable(written: list[Feature], columns: list[str]) -> None:
    """Rendering in another order needs what the prepared text was written from: eid, the feature columns and the
    numeric features' special answers (kept since PREPARE_VERSION 5)."""
    needed = ["eid"] + [f.name for f in written] + [f.name + SPECIAL_SUFFIX for f in written if f.numeric]
    absent = [c for c in needed if c not in columns]
    if absent:
        raise TextConfigError(
            f"the records lack column(s) {', '.join(absent)} needed to write their features in another order "
            "(train.shuffle_feature_order, eval.test_time_orders); a table prepared before these options existed "
            "must be prepared again (cadft prepare)"
        )


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


def check_text_options(text_cfg: Text, features: list[Feature]) -> None:
    """text.titles and text.categories name features of data.features; categories as cadft.data.categories checks."""
    names = [f.name for f in features]
    unknown = [name for name in text_cfg.titles or {} if name not in names]
    if unknown:
        raise TextConfigError(f"text.titles names {unknown}, which are not in data.features ({', '.join(names)})")
    written = [f.name for f in select_features(features, text_cfg.features)]
    check_categories(text_cfg.categories, features, written)


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
    title = (text_cfg.titles or {}).get(feature.name, feature.title)  # text.titles names only the features it shortens
    filled = text_cfg.item.format(title=_sentence_case(title), Title=title, value=_VALUE)
    before, after = filled.split(_VALUE)
    scheme = (text_cfg.categories or {}).get(feature.name)
    value, special = _value_text(feature, columns, schemes()[scheme] if scheme else None)
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


def _value_text(feature: Feature, columns: list[str], scheme=None) -> tuple[pl.Expr, pl.Expr]:
    """(the value as written, whether it is a special answer); a numeric value with its category when `scheme` (a
    cadft.data.categories.Scheme) is given."""
    column = pl.col(feature.name)
    if not feature.numeric:
        return column, column.is_in(list(SPECIAL_LABELS))
    number = column.cast(pl.Float64).fill_nan(None)
    rounded = number.round(feature.decimals)
    text = rounded.cast(pl.Int64).cast(pl.String) if feature.decimals == 0 else rounded.cast(pl.String)
    if feature.units:
        text = pl.concat_str([text, pl.lit(f" {feature.units}")])
    if scheme is not None:  # no category (sex unknown for HDL): the number alone
        label = category(rounded, scheme)
        text = pl.when(label.is_null()).then(text).otherwise(pl.concat_str([text, pl.lit(" ("), label, pl.lit(")")]))
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
