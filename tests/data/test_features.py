"""Baseline features from config: values, decoding, flags by sex, fallbacks, and the leakage guard."""

from __future__ import annotations

import re

import pytest

from cadft.data.features import FeatureConfigError, build_features, check_no_leakage, parse_features, required_fields
from cadft.data.task import Definition
from cadft.data.ukb.read import read_extract
from tests.extracts import base_person, write_showcase


def _people():
    woman = base_person(1000001, sex=0) | {6153: [1, 2], 20116: 2, 21000: 4001, 20107: [1], 20110: [-13]}
    man = base_person(1000002) | {
        4080: [],
        93: [150, 146],
        6177: [-3],
        20116: -3,
        30690: None,
        20107: [-11],
        20110: [-17],
    }
    nobody_answered = base_person(1000003) | {6177: [], 20107: [], 20110: [], 20111: [], 20002: [1473]}
    return [woman, man, nobody_answered]


@pytest.fixture
def table(tmp_path, make_config):
    cfg = make_config()
    features = parse_features(cfg.data.features)
    extract = read_extract(
        write_showcase(tmp_path / "x.csv", _people()), required_fields(features), optional_ids=(93, 94)
    )
    rows = build_features(extract, features).sort("eid").iter_rows(named=True)
    return {row["eid"]: row for row in rows}


def test_values_and_decoding(table):
    woman, man = table[1000001], table[1000002]
    assert woman["age"] == 60 and woman["sex"] == "Female" and man["sex"] == "Male"
    assert (
        woman["ethnicity"] == "Caribbean" and woman["smoking"] == "Current" and man["smoking"] == "Prefer not to answer"
    )
    assert man["cholesterol"] is None and woman["cholesterol"] == 5.6


def test_blood_pressure_mean_with_manual_fallback(table):
    assert table[1000001]["systolic_bp"] == 139.0  # mean of automated 141, 137
    assert table[1000002]["systolic_bp"] == 148.0  # no automated readings: manual 150, 146


def test_flags(table):
    woman, man, nobody = table[1000001], table[1000002], table[1000003]
    assert woman["cholesterol_medication"] == "Yes" and woman["bp_medication"] == "Yes" and woman["insulin"] == "No"
    assert man["cholesterol_medication"] == "Prefer not to answer"  # -3 was the only answer
    assert nobody["cholesterol_medication"] is None  # answered nothing
    assert (
        woman["family_heart_disease"] == "Yes" and man["family_heart_disease"] == "No"
    )  # -11 and -17: None of the above wins
    assert nobody["family_heart_disease"] is None
    assert (
        nobody["self_reported_high_cholesterol"] == "Yes" and woman["self_reported_high_cholesterol"] == "No"
    )  # absent: "no"


def test_leakage_guard(make_config):
    definition = Definition.from_config(make_config().task)
    check_no_leakage(parse_features(make_config().data.features), definition)
    for spec, field in (
        ({"mi_reported": {"kind": "flag", "fields": [6150], "codes": [1]}}, "6150"),
        ({"prior_mi": {"kind": "flag", "fields": [20002], "codes": [1075, 1065]}}, "20002"),
        ({"death": {"field": 40000}}, "40000"),
        ({"icd": {"kind": "flag", "fields": [41270], "codes": [1]}}, "41270"),
    ):
        with pytest.raises(FeatureConfigError, match=field):
            check_no_leakage(parse_features(spec), definition)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"x": {"kind": "median", "field": 31}}, "data.features.x.kind='median'; allowed: field, mean, flag"),
        ({"x": {"field": 6150}}, "array/multi-select field"),
        ({"x": {"kind": "flag", "fields": [6150]}}, "needs `codes`"),
        ({"x": {"field": 99999}}, "field 99999 is not in the registry"),
        ({"x": {"kind": "flag", "by_sex": {"F": 6153}, "codes": [1]}}, "by_sex: key 'F'; allowed: Female, Male"),
        ({}, "data.features is empty"),
        ({"x": {"field": 31, "title": "Sex", "mother or siblings": None}}, "unknown key(s) ['mother or siblings']"),
    ],
)
def test_bad_feature_config(spec, message):
    with pytest.raises(Exception, match=re.escape(message)):
        parse_features(spec)


def test_special_codes_are_never_numbers(tmp_path):
    """-1/-3 in a number field are answers (Do not know, Prefer not to answer); Townsend's negatives are values."""
    persons = [
        base_person(1000001) | {20161: -3, 21001: -1, 22189: -3.0, 1558: -1},
        base_person(1000002) | {20161: 12.5, 4080: [-1, 150], 48: -7},
        base_person(1000003) | {4080: [-3], 93: [], 30690: "nan"},
    ]
    spec = {
        "pack_years": {"field": 20161},
        "bmi": {"field": 21001},
        "townsend": {"field": 22189},
        "waist": {"field": 48},
        "alcohol": {"field": 1558},
        "sbp": {"kind": "mean", "fields": [4080, 93]},
        "cholesterol": {"field": 30690},
    }
    features = parse_features(spec)
    extract = read_extract(write_showcase(tmp_path / "x.csv", persons), required_fields(features), optional_ids=(93,))
    rows = {row["eid"]: row for row in build_features(extract, features).iter_rows(named=True)}
    first, second, third = rows[1000001], rows[1000002], rows[1000003]
    assert (first["pack_years"], first["pack_years:special"]) == (None, "Prefer not to answer")
    assert (first["bmi"], first["bmi:special"]) == (None, "Do not know")
    assert (first["townsend"], first["townsend:special"]) == (-3.0, None)  # signed in the registry
    assert first["alcohol"] == "Do not know"  # -1 is not in the alcohol coding, and still no number
    assert (second["pack_years"], second["pack_years:special"]) == (12.5, None)
    assert (second["sbp"], second["sbp:special"]) == (150.0, None)  # the -1 reading is left out of the mean
    assert (second["waist"], second["waist:special"]) == (None, None)  # a negative code without a label: missing
    assert (third["sbp"], third["sbp:special"]) == (None, "Prefer not to answer")
    assert third["cholesterol"] is None and extract.bad_values == {}
