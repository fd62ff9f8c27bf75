"""Censoring-aware measures: Harrell's and Uno's C, the IPCW Brier score and the observed risk per decile, by hand on
eight participants and against lifelines and scikit-survival on simulated follow-up."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import AalenJohansenFitter, KaplanMeierFitter
from lifelines.utils import concordance_index
from scipy.stats import binomtest

from cadft.data.followup import COMPETING_DEATH, EVENT, NO_EVENT
from cadft.data.ipcw import CensoringKM
from cadft.eval.survival import (
    TrainingCensoring,
    harrell_c,
    observed_by_decile,
    observed_risk,
    survival_metrics,
    uno_c,
    wilson_interval,
)
from tests.data.test_ipcw import HORIZON, STATUS, TIME, WEIGHTS

RISK = np.array([0.1, 0.5, 0.2, 0.3, 0.4, 0.2, 0.6, 0.7])  # A to H of tests/data/test_ipcw.py


def test_concordance_by_hand():
    """B (event at 3) is comparable with C (censored at 3) and the five later: 4 of 6 ranked right (G and H above B);
    H (event at 8) with F and G: 2 of 2. Uno weighs B by 1/G(3-)^2 = (8/7)^2 and H by 1/G(8-)^2 = (16/7)^2, G the
    censoring of follow-up by anything but an event (deaths too: 7/8 after A, 35/48 after C, 7/12 after D, 7/16
    after E)."""
    event = STATUS == EVENT
    assert harrell_c(TIME, event, RISK) == pytest.approx(6 / 8)
    censoring = CensoringKM.fit(TIME, ~event)
    assert censoring.before(8.0) == pytest.approx(7 / 16)
    assert uno_c(TIME, event, RISK, HORIZON, censoring) == pytest.approx((64 * 4 + 256 * 2) / (64 * 6 + 256 * 2))


def test_survival_block_by_hand():
    block = survival_metrics(TIME, STATUS, RISK, TrainingCensoring.fit(TIME, STATUS, HORIZON), bins=2)
    label = (STATUS == EVENT).astype(float)
    expected_brier = np.mean(np.array(list(WEIGHTS.values())) * (label - RISK) ** 2)
    assert block["brier_ipcw"] == pytest.approx(expected_brier)
    assert block["observed_risk"] == pytest.approx(13 / 35)  # Aalen-Johansen, by hand in tests/data/test_ipcw.py
    assert block["oe_ratio"] == pytest.approx(13 / 35 / RISK.mean())
    assert (block["events"], block["competing_deaths"], block["censored_before_horizon"], block["reached_horizon"]) == (
        2,
        1,
        3,
        2,
    )
    assert block["censoring"] == {"fitted_on": "train", "participants": 8, "censored_before_horizon": 3}
    low, high = block["deciles"]  # A C F D | E B G H by risk
    assert (low["n"], low["events"], low["censored"]) == (4, 0, 2) and low["observed"] == 0
    assert (high["n"], high["events"], high["censored"]) == (4, 2, 1)


@pytest.fixture(scope="module")
def cohort():
    """Exponential event, death and censoring times (censoring uniform over 2-25 years), follow-up cut at 10 years
    in whole months (tied times), a noisy risk score; half train, half test."""
    rng = np.random.default_rng(11)
    n = 6000
    x = rng.normal(size=n)
    times = [rng.exponential(1 / (0.015 * np.exp(0.8 * x))), rng.exponential(1 / 0.008, n), rng.uniform(2, 25, n)]
    end = np.minimum.reduce([*times, np.full(n, HORIZON)])
    status = np.where(end == times[0], EVENT, np.where(end == times[1], COMPETING_DEATH, NO_EVENT))
    risk = 1 / (1 + np.exp(-(x + rng.normal(0, 0.7, n) - 2.5)))
    return np.ceil(end * 12) / 12, status, risk, np.arange(n) < n // 2


def test_harrell_c_matches_lifelines_and_scikit_survival(cohort):
    time, status, risk, _ = cohort
    event = status == EVENT
    ours = harrell_c(time, event, risk)
    assert ours == pytest.approx(concordance_index(time, -risk, event), abs=1e-12)
    sksurv = pytest.importorskip("sksurv.metrics")  # Python 3.11+ (pyproject.toml's dev extras)
    assert ours == pytest.approx(sksurv.concordance_index_censored(event, time, risk)[0], abs=1e-12)
    tied = np.round(risk, 2)  # tied scores count one half
    assert harrell_c(time, event, tied) == pytest.approx(concordance_index(time, -tied, event), abs=1e-12)


def test_uno_c_matches_scikit_survival(cohort):
    """scikit-survival weighs by G(T_i), we by G(T_i-) (Uno's definition): equal without censorings tied to events,
    so the times are made distinct here."""
    sksurv = pytest.importorskip("sksurv.metrics")
    from sksurv.util import Surv

    time, status, risk, train = cohort
    time = time + np.random.default_rng(1).uniform(0, 1e-4, time.size)
    event = status == EVENT
    censoring = TrainingCensoring.fit(time[train], status[train], HORIZON)
    ours = uno_c(time[~train], event[~train], risk[~train], HORIZON, censoring.of_events)
    theirs = sksurv.concordance_index_ipcw(
        Surv.from_arrays(event[train], time[train]),
        Surv.from_arrays(event[~train], time[~train]),
        risk[~train],
        HORIZON,
    )[0]
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_brier_ipcw_matches_scikit_survival(cohort):
    """Without competing deaths the IPCW Brier score is Graf's, as scikit-survival computes it at a horizon inside
    the follow-up (survivors there have T > t)."""
    sksurv = pytest.importorskip("sksurv.metrics")
    from sksurv.util import Surv

    time, status, risk, train = cohort
    status = np.where(status == COMPETING_DEATH, NO_EVENT, status)  # every death censored
    time = time + np.random.default_rng(2).uniform(0, 1e-4, time.size)
    t = 8.0
    ours = survival_metrics(
        time[~train], status[~train], risk[~train], TrainingCensoring.fit(time[train], status[train], t), 10
    )
    event = status == EVENT
    theirs = sksurv.brier_score(
        Surv.from_arrays(event[train], time[train]), Surv.from_arrays(event[~train], time[~train]), 1 - risk[~train], t
    )[1][0]
    assert ours["brier_ipcw"] == pytest.approx(theirs, abs=1e-12)


def test_observed_risk_per_decile_matches_lifelines_kaplan_meier(cohort):
    """Without competing deaths: 1 - Kaplan-Meier at the horizon within each bin (tied times included)."""
    time, status, risk, _ = cohort
    status = np.where(status == COMPETING_DEATH, NO_EVENT, status)
    rows = observed_by_decile(time, status, risk, HORIZON, 10)
    bins = np.array_split(np.argsort(risk, kind="stable"), 10)
    for row, index in zip(rows, bins, strict=True):
        km = KaplanMeierFitter().fit(time[index], event_observed=status[index] == EVENT)
        assert row["n"] == len(index)
        assert row["observed"] == pytest.approx(1 - km.survival_function_at_times(HORIZON).iloc[0], abs=1e-12)
        assert row["observed_low"] <= row["observed"] <= row["observed_high"]


def test_observed_risk_with_competing_deaths_matches_aalen_johansen(cohort):
    time, status, _, _ = cohort
    time = time + np.random.default_rng(3).uniform(0, 1e-4, time.size)  # lifelines jitters tied times otherwise
    fitter = AalenJohansenFitter(calculate_variance=False).fit(time, status, event_of_interest=EVENT)
    incidence = fitter.cumulative_density_.iloc[:, 0]
    assert observed_risk(time, status, HORIZON) == pytest.approx(incidence[incidence.index <= HORIZON].iloc[-1])
    censored_deaths = np.where(status == COMPETING_DEATH, NO_EVENT, status)  # a death is no event, not a censoring
    assert observed_risk(time, status, HORIZON) < observed_risk(time, censored_deaths, HORIZON)


def test_wilson_interval_matches_scipy():
    for cases, n in ((0, 40), (3, 40), (40, 40), (17, 123)):
        interval = binomtest(cases, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(cases / n, n) == pytest.approx((interval.low, interval.high), abs=1e-12)
    assert wilson_interval(0.1, 0) == (None, None)


def test_no_comparable_pair_is_none():
    assert harrell_c(np.array([1.0, 2.0]), np.array([False, False]), np.array([0.1, 0.2])) is None
    alone = CensoringKM.fit([1.0], [False])
    assert uno_c(np.array([1.0]), np.array([True]), np.array([0.1]), 10.0, alone) is None


def test_under_exclude_the_survival_block_adds_to_unchanged_metrics(tiny_run):
    """task.censoring=exclude (the session's tiny run): no weights anywhere; nobody left is censored before the
    horizon, so the observed risk is the prevalence and the IPCW Brier score the Brier score."""
    import json

    test = json.loads((tiny_run / "eval" / "metrics.json").read_text())["test"]
    assert "weighted" not in test and "ipcw_weight" not in (tiny_run / "eval" / "predictions.jsonl").read_text()
    survival = test["survival"]
    assert survival["censored_before_horizon"] == 0 and survival["censoring"]["censored_before_horizon"] == 0
    assert survival["participants"] == test["n"] and survival["events"] == test["cases"]
    assert survival["observed_risk"] == pytest.approx(test["prevalence"])
    assert survival["brier_ipcw"] == pytest.approx(test["brier"])
