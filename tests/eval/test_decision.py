"""Decision metrics at risk thresholds and the decision curve: hand-computed values, and agreement with dcurves."""

import numpy as np
import pandas as pd
import pytest
from dcurves import dca

from cadft.eval.decision import at_risk_thresholds, decision_curve, decision_curve_thresholds

# Ten people, two cases. At a 10% threshold (risk >= 0.10) four are flagged: both cases and two controls.
LABEL = np.array([0, 0, 0, 0, 0, 0, 1, 0, 0, 1])
RISK = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.10, 0.12, 0.30, 0.40])


def test_decision_metrics_at_a_threshold_by_hand():
    (row,) = at_risk_thresholds(LABEL, RISK, [0.10])
    assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (2, 2, 6, 0)
    assert row["flagged"] == 0.4 and row["sensitivity"] == 1.0 and row["specificity"] == 0.75
    assert row["ppv"] == 0.5 and row["npv"] == 1.0
    # Net benefit: TP/n - FP/n * t/(1-t) = 0.2 - 0.2 * (0.1/0.9); treat all: 0.2 - 0.8 * (0.1/0.9).
    assert row["net_benefit"] == pytest.approx(0.2 - 0.2 / 9)
    assert row["net_benefit_treat_all"] == pytest.approx(0.2 - 0.8 / 9)


def test_nobody_flagged_has_undefined_ppv_and_zero_net_benefit():
    (row,) = at_risk_thresholds(LABEL, RISK, [0.5])
    assert row["flagged"] == 0.0 and row["ppv"] is None and row["net_benefit"] == 0.0 and row["sensitivity"] == 0.0


def test_decision_curve_and_threshold_table_agree_with_dcurves():
    rng = np.random.default_rng(0)
    label = (rng.random(3000) < 0.05).astype(int)
    risk = np.clip(0.05 + 0.08 * label + rng.normal(0, 0.04, label.size), 0.001, 0.999)
    thresholds = decision_curve_thresholds([0.01, 0.30, 0.01])
    assert len(thresholds) == 30 and thresholds[0] == 0.01 and thresholds[-1] == 0.3
    curve = decision_curve(label, {"model": risk}, thresholds)
    table = at_risk_thresholds(label, risk, thresholds)
    reference = dca(
        data=pd.DataFrame({"y": label, "model": risk}), outcome="y", modelnames=["model"], thresholds=thresholds
    )
    expected = reference[reference["model"] == "model"].sort_values("threshold")["net_benefit"].to_numpy()
    np.testing.assert_allclose([row["model"] for row in curve], expected, atol=1e-12)
    np.testing.assert_allclose([row["net_benefit"] for row in table], expected, atol=1e-12)
    np.testing.assert_allclose(
        [row["treat_all"] for row in curve], [row["net_benefit_treat_all"] for row in table], atol=1e-12
    )
    assert all(row["treat_none"] == 0 for row in curve)
