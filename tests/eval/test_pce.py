"""Pooled Cohort Equations against the published check values (shared ukb_reference.md section 5)."""

import numpy as np
import pytest

from cadft.eval.baselines.pce import BASELINE_SURVIVAL, MG_DL_PER_MMOL_L, pce_group, pce_linear_predictor, pce_risk

NO = 0  # untreated, non-smoker, no diabetes


def test_guideline_worked_example_white_woman():
    risk = pce_risk(55, True, False, 213 / MG_DL_PER_MMOL_L, 50 / MG_DL_PER_MMOL_L, 120, NO, NO, NO)
    assert risk == pytest.approx(0.021, abs=0.0005)


def test_white_man_with_the_same_values():
    risk = pce_risk(55, False, False, 213 / MG_DL_PER_MMOL_L, 50 / MG_DL_PER_MMOL_L, 120, NO, NO, NO)
    assert risk == pytest.approx(0.054, abs=0.0005)


def test_check_values_in_mmol_vectorised():
    risk = pce_risk(
        age=np.array([58, 56]),
        female=np.array([False, True]),
        black=np.array([False, False]),
        total_chol_mmol=np.array([5.5, 5.9]),
        hdl_mmol=np.array([1.3, 1.6]),
        sbp=np.array([140, 135]),
        bp_treated=np.array([False, False]),
        smoker=np.array([False, False]),
        diabetes=np.array([False, False]),
    )
    assert risk.shape == (2,)
    np.testing.assert_allclose(risk, [0.0898, 0.0250], atol=0.0001)


def test_each_group_uses_its_own_equation():
    tc, hdl = 213 / MG_DL_PER_MMOL_L, 50 / MG_DL_PER_MMOL_L
    female = np.array([1, 0, 1, 0])
    black = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(pce_group(female, black), [0, 1, 2, 3])
    risk = pce_risk(55, female, black, tc, hdl, 120, NO, NO, NO)
    assert len(set(np.round(risk, 6))) == 4
    assert risk[2] > risk[0]  # the worked example: Black women 3.0% vs white women 2.1%
    assert risk[2] == pytest.approx(0.030, abs=0.001)


def test_risk_factors_raise_risk_and_broadcast_over_scalars():
    base = {"age": 60, "female": False, "black": False, "total_chol_mmol": 5.5, "hdl_mmol": 1.3, "sbp": 140}
    plain = pce_risk(**base, bp_treated=0, smoker=0, diabetes=0)
    risks = pce_risk(**base, bp_treated=np.array([1, 0, 0]), smoker=np.array([0, 1, 0]), diabetes=np.array([0, 0, 1]))
    assert risks.shape == (3,)
    assert np.all(risks > plain)


def test_baseline_survival_override_rescales():
    args = (np.array([50, 65]), np.array([True, False]), False, 5.5, 1.4, 130, 0, 0, 0)
    np.testing.assert_allclose(pce_risk(*args, s0=BASELINE_SURVIVAL[[0, 1]]), pce_risk(*args))
    # S0 ** c multiplies the cumulative hazard by c.
    halved = pce_risk(*args, s0=BASELINE_SURVIVAL[[0, 1]] ** 0.5)
    np.testing.assert_allclose(-np.log1p(-halved), 0.5 * -np.log1p(-pce_risk(*args)))


def test_missing_input_gives_nan_and_lp_is_uncentred():
    risk = pce_risk([55, 55], True, False, [np.nan, 5.5], 1.3, 120, 0, 0, 0)
    assert np.isnan(risk[0]) and np.isfinite(risk[1])
    lp = pce_linear_predictor(55, True, False, 213 / MG_DL_PER_MMOL_L, 50 / MG_DL_PER_MMOL_L, 120, 0, 0, 0)
    assert lp == pytest.approx(-29.67, abs=0.01)  # the guideline's sum for the worked example
