"""Global importance with bootstrap CIs, direction by quintile, and agreement with the truth: a method that is the
truth agrees perfectly, one that ranks the parts the other way round disagrees."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cadft.explain.importance import direction, summarize

PARTS = ["age", "systolic_bp", "hdl", "smoking"]


def long(values: np.ndarray, eids: list[int], model: str, variant: str, column: str = "delta_logit") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model": model,
            "variant": variant,
            "eid": np.repeat(eids, len(PARTS)),
            "feature": PARTS * len(eids),
            column: values.ravel(),
        }
    )


def test_a_method_equal_to_the_truth_agrees_and_a_reversed_one_does_not():
    rng = np.random.default_rng(0)
    eids = list(range(100, 300))
    scale = np.array([1.0, 0.6, 0.3, 0.1])
    true = rng.normal(size=(len(eids), len(PARTS))) * scale
    frame = pl.concat(
        [
            long(true, eids, "llm", "remove").with_columns(delta_risk=pl.lit(0.0)),
            long(true * scale[::-1] / scale, eids, "logistic", "coefficient").with_columns(delta_risk=pl.lit(0.0)),
        ]
    )
    truth = long(true, eids, "truth", "log-hazard", "contribution").select("eid", "feature", "contribution")
    values = {part: pl.Series(part, rng.normal(size=len(eids))) for part in PARTS}
    summary = summarize(frame, eids, PARTS, values, truth, bootstrap=100, ci_level=0.95, seed=0)
    agreement = {row["model"]: row for row in summary["agreement"]}
    llm, logistic = agreement["llm"], agreement["logistic"]
    assert llm["spearman"] == pytest.approx(1.0) and llm["participant_rank_correlation_median"] == pytest.approx(1.0)
    assert llm["low"] == pytest.approx(1.0) and llm["features"] == PARTS
    assert logistic["spearman"] == pytest.approx(-1.0) and logistic["participants"] == len(eids)
    importance = pl.DataFrame(summary["importance"])
    mine = importance.filter(pl.col("model") == "llm").sort("mean_abs_delta_logit", descending=True)
    assert mine["feature"].to_list() == PARTS
    assert (mine["low"] <= mine["mean_abs_delta_logit"]).all() and (mine["mean_abs_delta_logit"] <= mine["high"]).all()
    expected = np.abs(true).mean(axis=0)
    np.testing.assert_allclose(importance.filter(pl.col("model") == "truth")["mean_abs_delta_logit"], expected)


def test_direction_by_quintile_rises_with_the_value_and_names_the_labels():
    rng = np.random.default_rng(1)
    sbp = rng.normal(138, 18, 500)
    rising = direction(pl.Series("systolic_bp", np.where(np.arange(500) < 20, np.nan, sbp)), 0.02 * (sbp - 138))
    means = [b["mean_delta_logit"] for b in rising["bins"][:5]]
    assert means == sorted(means) and means[0] < 0 < means[-1] and rising["spearman"] == pytest.approx(1.0)
    assert [b["label"][:2] for b in rising["bins"]] == ["Q1", "Q2", "Q3", "Q4", "Q5", "mi"]
    assert sum(b["n"] for b in rising["bins"]) == 500 and rising["bins"][-1]["n"] == 20
    smoking = pl.Series("smoking", ["Current"] * 50 + ["Never"] * 150 + [None] * 5)
    labels = direction(smoking, np.r_[np.full(50, 0.5), np.full(150, -0.1), np.zeros(5)])
    assert [(b["label"], b["n"]) for b in labels["bins"]] == [("Never", 150), ("Current", 50), ("missing", 5)]
    assert labels["bins"][1]["mean_delta_logit"] == 0.5 and labels["spearman"] is None
