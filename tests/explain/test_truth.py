"""The truth per part of a record: the oracle's true:<factor> columns, each assigned to the part of the record that
shows it (the history's conditions to the hospital diagnoses), for the participants and parts explained."""

from __future__ import annotations

import polars as pl
import pytest

from cadft.explain.truth import true_contributions


def test_the_oracles_factors_are_assigned_to_the_parts_of_the_record(make_config, synthetic_cohort):
    extract, oracle = synthetic_cohort
    config = make_config(f"data.path={extract}", f"data.oracle_path={oracle}")
    wide = pl.read_csv(oracle).filter(pl.col("prevalent") == 0).head(20)
    eids = wide["eid"].to_list()
    truth, note = true_contributions(config, eids, ["age", "sex", "history:diagnoses", "bmi"])
    assert set(truth["feature"]) == {"age", "sex", "history:diagnoses", "bmi"} and truth.height == 4 * 20
    first_rows = truth.filter(pl.col("eid") == eids[0]).iter_rows(named=True)
    by_part = {row["feature"]: row["contribution"] for row in first_rows}
    first = wide.row(0, named=True)
    assert by_part["age"] == pytest.approx(first["true:age"])
    assert by_part["history:diagnoses"] == pytest.approx(
        first["true:angina"] + first["true:peripheral_vascular"] + first["true:rheumatoid"]
    )
    assert "polygenic" in note and "compared with the true log-hazard contributions of age, angina" in note
    none, why = true_contributions(make_config(f"data.path={extract}", "data.oracle_path=null"), eids, ["age"])
    assert none is None and "not a synthetic cohort" in why
    old = oracle.with_name("old.oracle.csv")
    pl.read_csv(oracle).select("eid", "prevalent", "risk", "incident").write_csv(old)
    none, why = true_contributions(make_config(f"data.path={extract}", f"data.oracle_path={old}"), eids, ["age"])
    assert none is None and "written before cadft synth wrote them" in why
