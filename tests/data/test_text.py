"""Records as text: both templates, units, decoded labels, missing/special policies, no outcome data."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest

from cadft.data.features import parse_features
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
