"""Clinical categories from published cut points: right on each side of every cut point, on the value as written."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest

from cadft.data.categories import schemes
from cadft.data.features import parse_features
from cadft.data.text import render_texts


@pytest.mark.parametrize("name", sorted(schemes()))
def test_categories_are_right_at_each_cut_point(name, make_config):
    """Every band's bound, just below it and just above it, with the feature's decimals: the category written is the
    band the written number falls in (at_least: the bound is in the band; above: it is not)."""
    scheme = schemes()[name]
    decimals = 1
    spec = {"x": {"field": 30760, "title": "Value", "units": scheme.units, "decimals": decimals}, "sex": {"field": 31}}
    features = parse_features(spec)
    step = 10**-decimals
    for sex, bands in scheme.bands.items():
        rows = []
        for index, band in enumerate(bands[1:], start=1):
            below = bands[index - 1].label
            at = band.label if not band.strict else below
            rows += [(band.bound - step, below), (band.bound, at), (band.bound + step, band.label)]
        table = pl.DataFrame(
            {
                "eid": range(len(rows)),
                "x": [value for value, _ in rows],
                "x:special": [None] * len(rows),
                "sex": [sex or "Female"] * len(rows),
            }
        )
        text_cfg = replace(make_config().text, features=["sex", "x"], categories={"x": name})
        texts = render_texts(table, features, text_cfg).to_list()
        for (value, label), text in zip(rows, texts):
            assert text.endswith(f" ({label}).") and f"{value:.{decimals}f}" in text, (name, sex, value, text)


def test_the_category_follows_the_written_number_not_the_raw_value(make_config):
    """139.6 mmHg is written 140 (decimals 0), and 140 is stage 2 hypertension: number and category agree."""
    spec = {"systolic_bp": {"kind": "mean", "fields": [4080, 93], "title": "Systolic blood pressure", "decimals": 0}}
    table = pl.DataFrame({"eid": [1, 2], "systolic_bp": [139.6, 139.4], "systolic_bp:special": [None, None]})
    text_cfg = make_config("text=categories", "text.features=[systolic_bp]").text
    assert render_texts(table, parse_features(spec), text_cfg).to_list() == [
        "The systolic blood pressure is 140 mmHg (stage 2 hypertension).",
        "The systolic blood pressure is 139 mmHg (stage 1 hypertension).",
    ]


def test_hdl_categories_differ_by_sex_and_every_scheme_names_its_source(make_config):
    spec = {"sex": {"field": 31}, "hdl": {"field": 30760, "decimals": 2}}
    table = pl.DataFrame(
        {"eid": [1, 2, 3], "sex": ["Male", "Female", None], "hdl": [1.1, 1.1, 1.1], "hdl:special": [None] * 3}
    )
    text_cfg = make_config("text=categories", "text.features=[sex,hdl]").text
    assert render_texts(table, parse_features(spec), text_cfg).to_list() == [
        "The sex is Male. The HDL cholesterol is 1.1 mmol/L (normal HDL).",
        "The sex is Female. The HDL cholesterol is 1.1 mmol/L (low HDL).",
        "The HDL cholesterol is 1.1 mmol/L.",  # sex unknown: no category
    ]
    assert all(scheme.source and scheme.units for scheme in schemes().values())
