"""Inverse probability of censoring weights (task.censoring=ipcw) on hand-made follow-up with known answers, and the
censoring Kaplan-Meier against lifelines and scikit-survival."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from lifelines import KaplanMeierFitter

from cadft.data.followup import COMPETING_DEATH, EVENT, NO_EVENT
from cadft.data.ipcw import CensoringKM, censoring_of_label, label_weights, weighted_cases, with_label_weights

HORIZON = 10.0
# Eight participants, A to H: (years, how follow-up ended). C is censored at B's event time: the event leaves first.
HAND = {
    "A": (2.0, NO_EVENT),  # lost after 2 years: label unknown
    "B": (3.0, EVENT),
    "C": (3.0, NO_EVENT),  # the country's data end after 3 years
    "D": (5.0, COMPETING_DEATH),  # a death from another cause: a known control
    "E": (6.0, NO_EVENT),
    "F": (10.0, NO_EVENT),  # followed to the horizon event-free
    "G": (10.0, NO_EVENT),
    "H": (8.0, EVENT),
}
TIME = np.array([t for t, _ in HAND.values()])
STATUS = np.array([s for _, s in HAND.values()])
# G of the label (only A, C and E censor it), by hand: 2 -> 1 - 1/8; 3 -> x (1 - 1/6), B left first; 6 -> x (1 - 1/4)
G_AFTER = {2.0: 7 / 8, 3.0: 35 / 48, 6.0: 35 / 64}
# 1/G(T-) for events and deaths, 1/G(10) for reaching the horizon, 0 for the censored
WEIGHTS = {"A": 0, "B": 8 / 7, "C": 0, "D": 48 / 35, "E": 0, "F": 64 / 35, "G": 64 / 35, "H": 64 / 35}


def test_censoring_km_by_hand():
    g = censoring_of_label(TIME, STATUS, HORIZON)
    for t, value in G_AFTER.items():
        assert g.at(t) == pytest.approx(value) and g.at(t + 0.5) == pytest.approx(value)
    assert g.before(3.0) == pytest.approx(7 / 8) and g.before(2.0) == 1.0 and g.at(1.0) == 1.0
    assert g.at(10.0) == pytest.approx(35 / 64)  # reaching the horizon is no censoring


def test_label_weights_by_hand():
    weights = label_weights(TIME, STATUS, HORIZON, censoring_of_label(TIME, STATUS, HORIZON))
    assert weights == pytest.approx(list(WEIGHTS.values()))
    # With G from this group, the weighted event rate is the Aalen-Johansen cumulative incidence (worked by hand:
    # 1/7 at 3 years, then 8/35 at 8 years, after the death at 5).
    label = (STATUS == EVENT).astype(float)
    assert weights @ label / len(weights) == pytest.approx(13 / 35)


def test_weights_are_fitted_on_the_training_split():
    """The test split's censoring does not move its own weights: G comes from train."""
    train = pl.DataFrame({"split": ["train"] * 8, "followup_years": TIME, "followup_status": STATUS, "label": [0] * 8})
    test = pl.DataFrame(
        {"split": ["test"] * 3, "followup_years": [1.0, 4.0, 10.0], "followup_status": [0, 1, 0], "label": [0, 1, 0]}
    )
    weighted = with_label_weights(pl.concat([train, test]), HORIZON)
    assert weighted.filter(split="train")["ipcw_weight"].to_list() == pytest.approx(list(WEIGHTS.values()))
    assert weighted.filter(split="test")["ipcw_weight"].to_list() == pytest.approx([0, 48 / 35, 64 / 35])
    assert weighted_cases(weighted.filter(split="test")) == pytest.approx((48 / 35, 48 / 35 + 64 / 35))
    assert weighted_cases(test) == (1, 3)  # no weights: plain counts


@pytest.fixture(scope="module")
def follow_up():
    """Follow-up in whole months (ties between events and censorings), ~10% events, censoring through 15 years."""
    rng = np.random.default_rng(3)
    n = 4000
    event = rng.exponential(60, n)
    censoring = rng.uniform(1, 15, n)
    time = np.ceil(np.minimum(event, censoring) * 12) / 12
    return time, event <= censoring


def test_censoring_km_matches_scikit_survival_with_ties(follow_up):
    """scikit-survival's censoring estimator follows the same rule: at a tied time the events leave first."""
    nonparametric = pytest.importorskip("sksurv.nonparametric")  # Python 3.11+ (pyproject.toml's dev extras)
    from sksurv.util import Surv

    time, event = follow_up
    ours = CensoringKM.fit(time, ~event)
    theirs = nonparametric.CensoringDistributionEstimator().fit(Surv.from_arrays(event, time))
    grid = np.unique(time)[:-1]
    assert np.abs(ours.at(grid) - theirs.predict_proba(grid)).max() < 1e-12


def test_censoring_km_matches_lifelines_without_ties(follow_up):
    time, event = follow_up
    time = time + np.random.default_rng(0).uniform(0, 1e-3, time.size)  # no tied times: every convention agrees
    ours = CensoringKM.fit(time, ~event)
    theirs = KaplanMeierFitter().fit(time, event_observed=~event)
    grid = np.linspace(0.5, 14.5, 57)
    assert np.abs(ours.at(grid) - theirs.survival_function_at_times(grid).to_numpy()).max() < 1e-12
