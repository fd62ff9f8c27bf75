"""Records as text: both templates, units, decoded labels, missing/special policies, no outcome data."""

from __future__ import annotations

import polars as pl
import pytest

from cadft.features import parse_features
from cadft.text import TextConfigError, check_item, render_texts

SPEC = {
    "age": {"field": 21022},
    "sex": {"field": 31},
    "smoking": {"field": 20116},
    "hdl": {"field": 30760, "decimals": 2},
    "systolic_bp": {"kind": "mean", "fields": [4080, 93], "title": "Systolic blood pressure", "decimals": 0},
}
TABLE = pl.DataFrame(
    {"age": [63.0, 47.0], "sex": ["Male", "Female"], "smoking": ["Current", "Prefer not to answer"],
     "hdl": [1.234, None], "systolic_bp": [141.5, 120.0]}
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
        "- Age at recruitment: 47 years", "- Sex: Female", "- Smoking status: Prefer not to answer",
        "- HDL cholesterol: not recorded", "- Systolic blood pressure: 120 mmHg",
    ]


def test_prefix(make_config):
    first, _ = _render(make_config, "text.prefix='Predict CAD. '")
    assert first.startswith("Predict CAD. The age at recruitment is 63 years.")


@pytest.mark.parametrize(("item", "message"), [("{name}: {value}", "unknown placeholder"), ("nothing", "must contain"), ("{value} {value}", "once")])
def test_bad_item_template(item, message):
    with pytest.raises(TextConfigError, match=message):
        check_item(item)


def test_text_features_subset(make_config):
    first, _ = _render(make_config, "text.features=[sex,age]")
    assert first == "The sex is Male. The age at recruitment is 63 years."
    with pytest.raises(TextConfigError, match=r"text.features names \['bmi'\]"):
        _render(make_config, "text.features=[bmi]")
