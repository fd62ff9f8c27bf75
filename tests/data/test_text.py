"""Records as text: every template (text, list, compact, categories), units, decoded labels, missing/special policies,
other feature orders, no outcome data."""

from __future__ import annotations

import re
from dataclasses import replace

import polars as pl
import pytest

from cadft.data.features import SPECIAL_LABELS, parse_features
from cadft.data.text import TextConfigError, check_item, render_texts

SPEC = {
    "age": {"field": 21022},
    "sex": {"field": 31},
    "smoking": {"field": 20116},
    "hdl": {"field": 30760, "decimals": 2},
    "systolic_bp": {"kind": "mean", "fields": [4080, 93], "title": "Systolic blood pressure", "decimals": 0},
}
TABLE = pl.DataFrame(
    {
        "age": [63.0, 47.0],
        "sex": ["Male", "Female"],
        "smoking": ["Current", "Prefer not to answer"],
        "hdl": [1.234, None],
        "systolic_bp": [141.5, 120.0],
    }
)


def _render(make_config, *overrides):
    cfg = make_config(*overrides)
    return render_texts(TABLE, parse_features(SPEC), cfg.text).to_list()


def test_text_template(make_config):
    first, second = _render(make_config)
    assert first == (
        "The age at recruitment is 63 years. The sex is Male. The smoking status is Current. "
        "The HDL cholesterol is 1.23 mmol/L. The systolic blood pressure is 142 mmHg."
    )
    assert second == "The age at recruitment is 47 years. The sex is Female. The systolic blood pressure is 120 mmHg."


def test_list_template_and_stated_missing(make_config):
    _, second = _render(make_config, "text=list", "text.missing=state", "text.special=state")
    assert second.split("\n") == [
        "- Age at recruitment: 47 years",
        "- Sex: Female",
        "- Smoking status: Prefer not to answer",
        "- HDL cholesterol: not recorded",
        "- Systolic blood pressure: 120 mmHg",
    ]


def test_prefix(make_config):
    first, _ = _render(make_config, "text.prefix='Predict CAD. '")
    assert first.startswith("Predict CAD. The age at recruitment is 63 years.")


@pytest.mark.parametrize(
    ("item", "message"),
    [("{name}: {value}", "unknown placeholder"), ("nothing", "must contain"), ("{value} {value}", "once")],
)
def test_bad_item_template(item, message):
    with pytest.raises(TextConfigError, match=message):
        check_item(item)


def test_text_features_subset(make_config):
    first, _ = _render(make_config, "text.features=[sex,age]")
    assert first == "The sex is Male. The age at recruitment is 63 years."
    with pytest.raises(TextConfigError, match=r"text.features names \['bmi'\]"):
        render_texts(TABLE, parse_features(SPEC), replace(make_config().text, features=["bmi"]))


NUMBERS = {
    "pack_years": {"field": 20161, "decimals": 1},
    "waist": {"field": 48, "decimals": 0},
    "systolic_bp": {"kind": "mean", "fields": [4080, 93], "title": "Systolic blood pressure", "decimals": 0},
    "smoking": {"field": 20116},
}
# Hand-made records: a NaN and a special answer in each number column, and the special answers' own columns.
RECORDS = pl.DataFrame(
    {
        "pack_years": [float("nan"), None, 21.34],
        "pack_years:special": [None, "Prefer not to answer", None],
        "waist": [float("nan"), 92.4, None],
        "waist:special": [None, None, "Do not know"],
        "systolic_bp": [None, float("nan"), 150.0],
        "smoking": ["Previous", "Prefer not to answer", "Current"],
    }
)


@pytest.mark.parametrize(
    ("missing", "special", "expected"),
    [
        (
            "drop",
            "drop",
            [
                "The smoking status is Previous.",
                "The waist circumference is 92 cm.",
                "The pack years of smoking is 21.3 pack-years. The systolic blood pressure is 150 mmHg. The smoking "
                "status is Current.",
            ],
        ),
        (
            "drop",
            "state",
            [
                "The smoking status is Previous.",
                "The pack years of smoking is Prefer not to answer. The waist circumference is 92 cm. The smoking "
                "status is Prefer not to answer.",
                "The pack years of smoking is 21.3 pack-years. The waist circumference is Do not know. The systolic "
                "blood pressure is 150 mmHg. "
                "The smoking status is Current.",
            ],
        ),
        (
            "state",
            "drop",
            [
                "The pack years of smoking is not recorded. The waist circumference is not recorded. The systolic "
                "blood pressure is not recorded. "
                "The smoking status is Previous.",
                "The pack years of smoking is not recorded. The waist circumference is 92 cm. The systolic blood "
                "pressure is not recorded. "
                "The smoking status is not recorded.",
                "The pack years of smoking is 21.3 pack-years. The waist circumference is not recorded. The systolic "
                "blood pressure is 150 mmHg. "
                "The smoking status is Current.",
            ],
        ),
        (
            "state",
            "state",
            [
                "The pack years of smoking is not recorded. The waist circumference is not recorded. The systolic "
                "blood pressure is not recorded. "
                "The smoking status is Previous.",
                "The pack years of smoking is Prefer not to answer. The waist circumference is 92 cm. The systolic "
                "blood pressure is not recorded. "
                "The smoking status is Prefer not to answer.",
                "The pack years of smoking is 21.3 pack-years. The waist circumference is Do not know. The systolic "
                "blood pressure is 150 mmHg. "
                "The smoking status is Current.",
            ],
        ),
    ],
)
def test_nan_and_special_answers_are_never_numbers(make_config, missing, special, expected):
    cfg = make_config(f"text.missing={missing}", f"text.special={special}")
    assert render_texts(RECORDS, parse_features(NUMBERS), cfg.text).to_list() == expected


# --- serializations: each carries every feature -----------------------------------------------------------------


def _parse_items(text: str, text_cfg, features) -> dict[str, str]:
    """Feature -> its value as written, found by the item template around it (the text read back, not rebuilt); a
    number's value starts with a digit ("Cholesterol 5.2 mmol/L" is not "Cholesterol drugs No")."""
    found = {}
    separator = re.escape(text_cfg.separator)
    for feature in features:
        title = (text_cfg.titles or {}).get(feature.name, feature.title)
        lowered = title if len(title) > 1 and title[1].isupper() else title[:1].lower() + title[1:]
        before, after = text_cfg.item.format(title=lowered, Title=title, value="\x00").split("\x00")
        value = r"(-?\d.*?)" if feature.numeric else r"(.*?)"
        match = re.search(rf"(?:^|{separator}){re.escape(before)}{value}{re.escape(after)}(?={separator}|$)", text)
        if match:
            found[feature.name] = match.group(1)
    return found


@pytest.mark.parametrize("option", ["text", "list", "compact", "categories"])
def test_every_serialization_carries_every_feature(option, make_config, synthetic_cohort, prepared_dir):
    """The session cohort's prepared table written in each serialization (and in another order of its features):
    every value read back from the text equals the table's, rounded as the feature says; a missing value is absent."""
    from cadft.data.categories import schemes
    from cadft.data.prepare import prepare

    extract, _ = synthetic_cohort
    config = make_config(f"data.path={extract}", f"paths.prepared_dir={prepared_dir}", f"text={option}")
    features = parse_features(config.data.features)
    table = prepare(make_config(f"data.path={extract}", f"paths.prepared_dir={prepared_dir}")).table().head(150)
    categories = config.text.categories or {}
    for order in (None, 3):
        texts = render_texts(table, features, config.text, order=order, seed=7).to_list()
        for row, text in zip(table.iter_rows(named=True), texts):
            written = _parse_items(text, config.text, features)
            for feature in features:
                value = row[feature.name]
                # missing (None or NaN) or a special answer (text.special=drop in every option): not written
                if value is None or (feature.numeric and value != value) or value in SPECIAL_LABELS:
                    assert feature.name not in written, (feature.name, text)
                    continue
                if not feature.numeric:
                    assert written[feature.name] == value
                    continue
                number, _, rest = written[feature.name].partition(" ")
                # the value rounded to the feature's decimals (half a unit of the last digit either way)
                assert abs(float(number) - value) <= 0.5 * 10**-feature.decimals + 1e-9, (feature.name, text)
                if feature.name in categories:
                    units, _, category = rest.partition(" (")
                    assert units == feature.units and category.endswith(")")
                    scheme = schemes()[categories[feature.name]]
                    bands = scheme.bands[row[scheme.by] if scheme.by else None]
                    expected = [
                        b.label
                        for b in bands
                        if b.bound is None or (float(number) > b.bound if b.strict else float(number) >= b.bound)
                    ][-1]
                    assert category[:-1] == expected
                else:
                    assert rest == feature.units
    assert len(texts) == 150


def test_another_order_is_a_permutation_drawn_from_seed_order_and_eid_alone(make_config):
    table = TABLE.with_columns(
        pl.Series("eid", [11, 12]), pl.lit(None, pl.String).alias("age:special"),
        pl.lit(None, pl.String).alias("hdl:special"), pl.lit(None, pl.String).alias("systolic_bp:special"),
    )  # fmt: skip
    text_cfg, features = make_config("text=list").text, parse_features(SPEC)
    prepared = render_texts(table, features, text_cfg).to_list()
    orders = {k: render_texts(table, features, text_cfg, order=k, seed=1).to_list() for k in range(1, 6)}
    for k, texts in orders.items():
        assert [sorted(t.split("\n")) for t in texts] == [sorted(t.split("\n")) for t in prepared]
        # The same person in another company gets the same order.
        assert render_texts(table.tail(1), features, text_cfg, order=k, seed=1).to_list() == texts[1:]
    assert len({texts[0] for texts in orders.values()}) > 2  # the orders differ
    assert render_texts(table, features, text_cfg, order=1, seed=2).to_list() != orders[1]
    with pytest.raises(TextConfigError, match=r"lack column\(s\) hdl:special"):
        render_texts(table.drop("hdl:special"), features, text_cfg, order=1)
