"""Occlusion: which parts of a record moved the language model's risk.

A record's parts are its text features (text.features, in order) and, with text.history=on, its history items (one
per source: history:illnesses, history:operations, history:medications, history:diagnoses). For each participant and
part the record is written again (cadft.data.text) with that part
- `remove`: left out (the feature's sentence is not written, the history item is empty), or
- `median`: set to the training split's median (numbers) or most common value (labels, and the history item's list),
and scored by the model. Δlogit = logit(whole record) − logit(occluded record): what the part added to the model's
log-odds (positive: it raised the risk); Δrisk is the same difference of the calibrated risks (the run's saved
calibrator). Identical records are scored once, so a part whose occlusion leaves the record as it was (a missing value
removed, a value already at the median) gets Δ = 0 exactly.

Cost: 1 + parts × variants forward passes per participant (fewer where records repeat), batched and length-sorted like
scoring (cadft.eval.score).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from cadft.config.schema import Text
from cadft.data.features import SPECIAL_SUFFIX, Feature
from cadft.data.history import SOURCES, name_column
from cadft.data.text import render_texts
from cadft.errors import CadftError
from cadft.eval.recalibration import Recalibrator, to_logit

VARIANTS = ("remove", "median")
_LIST_JOIN = "\x1f"  # joins a history item's names into one key to count the most common list


@dataclass(frozen=True)
class Cost:
    participants: int
    forward_passes: int  # 1 + parts x variants per participant
    records_scored: int  # distinct records among them: what was run through the model


def record_parts(features: list[Feature], text: Text, names: Sequence[str] | None = None) -> list[str]:
    """The parts occlusion takes out one at a time, in the record's order: the text's features (`features`, as
    select_features gives them), then history:<source> with text.history=on; `names` (explain.features) keeps some of
    them. A name that is not a part is a CadftError."""
    parts = [feature.name for feature in features]
    if text.history == "on":
        parts += [name_column(source) for source in SOURCES]
    if names is None:
        return parts
    unknown = [name for name in names if name not in parts]
    if unknown:
        raise CadftError(
            f"explain.features names {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not part of "
            f"the record (its parts: {', '.join(parts)})"
        )
    return [part for part in parts if part in names]


def reference_values(train: pl.DataFrame, features: list[Feature], parts: list[str]) -> dict[str, object]:
    """part -> what the median variant writes: the training records' median for a number (missing values left out),
    their most common label, or their most common list for a history item (None: nothing, when most have none)."""
    numeric = {feature.name for feature in features if feature.numeric}
    values = {}
    for part in parts:
        column = train[part]
        if part in numeric:
            values[part] = column.cast(pl.Float64).median()
        elif column.dtype == pl.List(pl.String):
            key = column.list.join(_LIST_JOIN).fill_null("")
            common = _most_common(key)
            values[part] = common.split(_LIST_JOIN) if common else None
        else:
            values[part] = _most_common(column.drop_nulls())
    return values


def _most_common(column: pl.Series):
    """The most frequent value (ties: the smallest), None for an empty column."""
    if column.len() == 0:
        return None
    counts = column.value_counts(name="count").sort(["count", column.name], descending=[True, False])
    return counts[column.name][0]


def occlude(
    rows: pl.DataFrame,
    features: list[Feature],
    text: Text,
    parts: list[str],
    variants: Sequence[str],
    reference: dict[str, object],
    score: Callable[[list[str]], np.ndarray],
) -> tuple[pl.DataFrame, Cost]:
    """(eid, feature, variant, prob, prob_occluded) for each participant of `rows` (a record table: eid and the
    columns the text is written from), part and variant; `score` gives the model's P(label=1) of texts. Each distinct
    record is scored once."""
    whole = _render(rows, features, text)
    occluded = [
        pl.DataFrame(
            {
                "eid": rows["eid"],
                "feature": part,
                "variant": variant,
                "text": _occluded(rows, features, text, part, variant, reference),
            }
        )
        for variant in variants
        for part in parts
    ]
    long = (
        pl.concat(occluded)
        if occluded
        else pl.DataFrame(schema={"eid": pl.Int64, "feature": pl.String, "variant": pl.String, "text": pl.String})
    )
    distinct = pl.concat([whole, long["text"]]).unique(maintain_order=True)
    scored = pl.DataFrame({"text": distinct, "prob": np.asarray(score(distinct.to_list()), dtype=np.float64)})
    frame = (
        long.join(pl.DataFrame({"eid": rows["eid"], "whole": whole}), on="eid", how="left", maintain_order="left")
        .join(scored.rename({"text": "whole"}), on="whole", how="left", maintain_order="left")
        .join(scored.rename({"prob": "prob_occluded"}), on="text", how="left", maintain_order="left")
        .select("eid", "feature", "variant", "prob", "prob_occluded")
    )
    return frame, Cost(rows.height, rows.height * (1 + len(parts) * len(variants)), distinct.len())


def deltas(frame: pl.DataFrame, recalibrator: Recalibrator) -> pl.DataFrame:
    """`frame` (prob, prob_occluded) with delta_logit and delta_risk: the whole record's minus the occluded one's."""
    prob, occluded = frame["prob"].to_numpy(), frame["prob_occluded"].to_numpy()
    return frame.with_columns(
        pl.Series("delta_logit", to_logit(prob) - to_logit(occluded)),
        pl.Series("delta_risk", recalibrator.apply(prob) - recalibrator.apply(occluded)),
    )


def _render(rows: pl.DataFrame, features: list[Feature], text: Text) -> pl.Series:
    """The records as the text group writes them, from exactly these features (text.features already applied)."""
    return render_texts(rows, features, replace(text, features=None))


def _occluded(
    rows: pl.DataFrame, features: list[Feature], text: Text, part: str, variant: str, reference: dict[str, object]
) -> pl.Series:
    if variant == "remove" and part in {feature.name for feature in features}:
        return _render(rows, [feature for feature in features if feature.name != part], text)
    return _render(with_part(rows, part, None if variant == "remove" else reference[part]), features, text)


def with_part(rows: pl.DataFrame, part: str, value) -> pl.DataFrame:
    """`rows` with one part set to `value` for everyone (None: nothing), a number's special answer cleared with it."""
    changed = [pl.lit(value, dtype=rows[part].dtype).alias(part)]
    if part + SPECIAL_SUFFIX in rows.columns:  # a special answer stands in for a missing number: it goes too
        changed.append(pl.lit(None, dtype=pl.String).alias(part + SPECIAL_SUFFIX))
    return rows.with_columns(changed)
