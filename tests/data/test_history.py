"""Medical history as words (text.history): only what came before the assessment, names not codes, never the outcome,
capped in a fixed order; the baselines see it as indicator columns."""

from __future__ import annotations

import polars as pl
import pytest

from cadft.config.validate import validate
from cadft.data.features import build_features, parse_features, required_fields
from cadft.data.history import HISTORY_COLUMN, build_history, history_fields, icd10_title
from cadft.data.task import Definition
from cadft.data.text import render_texts
from cadft.data.ukb.read import read_extract
from cadft.errors import CadftError
from cadft.eval.baselines.classical import HISTORY_MIN_RECORDS, _with_history_indicators
from tests.extracts import base_person, write_showcase

BASELINE = "2008-06-15"


def _people() -> list[dict]:
    rich = base_person(1000001) | {
        # hypertension, heart attack (the outcome), high cholesterol, angina, no label
        20002: [1065, 1075, 1473, 1074, 9999],
        20004: [1326],  # appendicectomy
        20003: [1140861958, 1140868226, -1],  # simvastatin, aspirin, "do not know"
        41270: [("I10", "2001-03-02"), ("I209", "2007-11-30"), ("I214", "2005-01-01"), ("E119", "2012-05-05"),
                ("K409", "1900-01-01"), ("M069", BASELINE), ("U999", "2004-04-04"), ("M1696", "2003-03-03")],
    }  # fmt: skip
    plain = base_person(1000002)
    many = base_person(1000003) | {
        41270: [(code, f"200{i}-01-01") for i, code in enumerate(["J459", "K219", "I10", "E039", "N390", "R074"])]
    }
    return [rich, plain, many]


@pytest.fixture
def extract(tmp_path):
    return read_extract(write_showcase(tmp_path / "x.csv", _people()), [53], optional_ids=tuple(history_fields()))


@pytest.fixture
def definition(make_config):
    return Definition.from_config(make_config().task)  # hard CAD, incident


def test_only_names_from_before_the_assessment_and_never_the_outcome(extract, definition):
    history, card = build_history(extract, definition, max_items=8)
    rich = history.filter(pl.col("eid") == 1000001).row(0, named=True)
    assert rich["history:illnesses"] == ["hypertension", "high cholesterol", "angina"]  # as given; 1075 is the outcome
    assert rich["history:operations"] == ["appendicectomy"]
    assert rich["history:medications"] == ["simvastatin", "aspirin"]  # the special answer -1 is no medication
    # Most recent first; the infarction (outcome), the 2012 record (after the assessment) and the placeholder date are
    # left out; a diagnosis on the assessment day counts.
    assert rich["history:diagnoses"] == [
        "Rheumatoid arthritis, unspecified",
        "Angina pectoris, unspecified",
        "Coxarthrosis, unspecified",
        "Essential (primary) hypertension",
    ]  # M16.96 (a UK fifth character): its WHO parent M16.9
    assert (
        "41270:I214" not in rich[HISTORY_COLUMN]
        and "41270:E119" not in rich[HISTORY_COLUMN]
        and "20002:1075" not in rich[HISTORY_COLUMN]
    )
    assert "20003:1140861958" in rich[HISTORY_COLUMN] and "41270:M069" in rich[HISTORY_COLUMN]
    plain = history.filter(pl.col("eid") == 1000002).row(0, named=True)
    assert plain[HISTORY_COLUMN] == [] and plain["history:diagnoses"] is None
    # 9999 has no label in the shipped coding and U99.9 is not in the WHO classification: counted, not written.
    assert card["untitled"] == {"20002": 1, "41270": 1}
    assert card["participants_with_history"] == 2


def test_cap_keeps_the_most_recent_diagnoses(extract, definition):
    history, _ = build_history(extract, definition, max_items=2)
    many = history.filter(pl.col("eid") == 1000003).row(0, named=True)
    assert many["history:diagnoses"] == [
        "Chest pain, unspecified",
        "Urinary tract infection, site not specified",
    ]  # 2005, 2004


def test_record_text(extract, definition, make_config):
    cfg = make_config("text.history=on", "text.features=[age]")
    history, _ = build_history(extract, definition, max_items=8)
    features = parse_features(cfg.data.features)
    table = build_features(read_extract(extract.path, required_fields(features)), features).join(history, on="eid")
    texts = dict(zip(table["eid"], render_texts(table, features, cfg.text)))
    assert texts[1000001] == (
        "The age at recruitment is 60 years. The list of self-reported illnesses is hypertension; high cholesterol; "
        "angina. "
        "The list of self-reported operations is appendicectomy. The list of medications taken is simvastatin; "
        "aspirin. "
        "The list of hospital diagnoses before the assessment is Rheumatoid arthritis, unspecified; Angina pectoris, "
        "unspecified; "
        "Coxarthrosis, unspecified; Essential (primary) hypertension."
    )
    assert texts[1000002] == "The age at recruitment is 60 years."  # nothing to report: no history items


def test_icd10_titles():
    assert (
        icd10_title("I251") == "Atherosclerotic heart disease"
        and icd10_title("i10") == "Essential (primary) hypertension"
    )
    assert icd10_title("M1696") == "Coxarthrosis, unspecified"  # a UK fifth character: the WHO parent
    assert (
        icd10_title("X") is None and icd10_title("I25.1") is None and icd10_title("U999") is None
    )  # a chapter; no dots; unknown


def test_prevalent_task_refuses_medications_and_seed_json_refuses_history(compose_config):
    prevalent = (
        "task.outcome=prevalent",
        "task.exclude=null",
        "~data.features.cholesterol_medication",
        "~data.features.bp_medication",
    )
    cfg = compose_config("text.history=on", *prevalent)
    with pytest.raises(
        CadftError, match=r"text.history=on writes the medications taken .* data.allow_treatment_features=true"
    ):
        validate(cfg)
    validate(compose_config("text.history=on", *prevalent, "data.allow_treatment_features=true"))
    with pytest.raises(CadftError, match=r"text.history"):
        validate(compose_config("text.history=yes"))


def test_baselines_get_indicators_from_train_alone():
    common = ["20002:1065"] * HISTORY_MIN_RECORDS
    splits = {
        "train": pl.DataFrame(
            {"age": [60.0] * (HISTORY_MIN_RECORDS + 1), HISTORY_COLUMN: [[item] for item in common] + [["41270:I10"]]}
        ),
        "validation": pl.DataFrame({"age": [50.0, 55.0], HISTORY_COLUMN: [["20002:1065", "41270:I10"], []]}),
        "test": pl.DataFrame({"age": [50.0], HISTORY_COLUMN: [["41270:J459"]]}),
    }
    expanded, names = _with_history_indicators(splits, ["age", HISTORY_COLUMN])
    assert names == ["age", "history=20002:1065"]  # I10: one training record, under the threshold
    assert expanded["validation"]["history=20002:1065"].to_list() == [1, 0]
    assert expanded["test"]["history=20002:1065"].to_list() == [0]
    assert _with_history_indicators(splits, ["age"]) == (splits, ["age"])


def test_config_default_is_off(make_config):
    cfg = make_config()
    assert cfg.text.history == "off" and cfg.text.history_max_items == 8
