"""NRI (across risk categories and continuous) and IDI against values computed by hand, with paired bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cadft.eval.reclassification import reclassification, risk_categories

THRESHOLDS = [0.05, 0.10]
# (label, reference risk, new risk): categories <5%, 5-10%, >=10% (a risk at a threshold is in the higher one).
PEOPLE = [
    (1, 0.04, 0.06),  # up a category
    (1, 0.08, 0.12),  # up
    (1, 0.12, 0.09),  # down
    (1, 0.05, 0.05),  # unchanged
    (0, 0.03, 0.02),  # same category, lower risk
    (0, 0.06, 0.04),  # down a category
    (0, 0.11, 0.13),  # same category, higher risk
    (0, 0.09, 0.10),  # up: 10% is in the top category
    (0, 0.02, 0.025),  # same category, higher risk
    (0, 0.07, 0.04),  # down
]
LABEL, REFERENCE, NEW = (np.array(column) for column in zip(*PEOPLE))


def test_nri_and_idi_equal_the_hand_computed_values():
    result = reclassification(LABEL, REFERENCE, NEW, THRESHOLDS, resamples=0, level=0.95, rng=np.random.default_rng(0))
    # Events: 2 up, 1 down of 4; non-events: 2 down, 1 up of 6.
    assert result["nri_events"]["value"] == pytest.approx((2 - 1) / 4)
    assert result["nri_nonevents"]["value"] == pytest.approx((2 - 1) / 6)
    assert result["nri"]["value"] == pytest.approx(1 / 4 + 1 / 6)
    # Any change: events 2 up, 1 down; non-events 3 down (0.03->0.02, 0.06->0.04, 0.07->0.04), 3 up.
    assert result["nri_continuous_events"]["value"] == pytest.approx(1 / 4)
    assert result["nri_continuous_nonevents"]["value"] == pytest.approx(0.0)
    assert result["nri_continuous"]["value"] == pytest.approx(1 / 4)
    # IDI: events' mean risk rose by 0.03/4, non-events' fell by 0.025/6.
    assert result["idi"]["value"] == pytest.approx(0.03 / 4 + 0.025 / 6)
    auroc_gain = roc_auc_score(LABEL, NEW) - roc_auc_score(LABEL, REFERENCE)
    assert result["delta_auroc"]["value"] == pytest.approx(auroc_gain)
    assert result["reclassified"] == {"events_up": 2, "events_down": 1, "nonevents_up": 1, "nonevents_down": 2}
    assert result["thresholds"] == THRESHOLDS and result["nri"]["low"] is None
    assert risk_categories(np.array([0.0499, 0.05, 0.0999, 0.1, 0.5]), THRESHOLDS).tolist() == [0, 1, 1, 2, 2]


def test_the_intervals_come_from_paired_resamples_of_the_participants():
    rng = np.random.default_rng(1)
    label = (rng.random(400) < 0.2).astype(int)
    reference = np.clip(0.1 + 0.1 * label + rng.normal(0, 0.05, 400), 0.001, 0.999)
    same = reclassification(label, reference, reference, THRESHOLDS, resamples=200, level=0.95, rng=rng)
    assert all(same[name] == {"value": 0.0, "low": 0.0, "high": 0.0} for name in ("nri", "idi", "delta_auroc"))
    better = np.clip(reference + 0.1 * label - 0.02, 0.001, 0.999)  # cases up, controls down: a real gain
    result = reclassification(label, reference, better, THRESHOLDS, resamples=200, level=0.95, rng=rng)
    for name in ("nri", "nri_continuous", "idi", "delta_auroc"):
        assert 0 < result[name]["low"] <= result[name]["value"] <= result[name]["high"], name


def test_ipcw_weights_count_as_copies_of_a_participant():
    """task.censoring=ipcw: a weight of 2 counts a participant twice, a weight of 0 (censored before the horizon)
    leaves them out, reclassification counts included."""
    weight = np.array([2.0, 1, 1, 0, 1, 0, 1, 2, 1, 1])
    copies = np.repeat(np.arange(len(PEOPLE)), weight.astype(int))
    kwargs = {"resamples": 0, "level": 0.95, "rng": np.random.default_rng(0)}
    weighted = reclassification(LABEL, REFERENCE, NEW, THRESHOLDS, weight=weight, **kwargs)
    repeated = reclassification(LABEL[copies], REFERENCE[copies], NEW[copies], THRESHOLDS, **kwargs)
    for name in ("delta_auroc", "nri", "nri_events", "nri_nonevents", "nri_continuous", "idi"):
        assert weighted[name]["value"] == pytest.approx(repeated[name]["value"]), name
    # counts of participants (not weighted), the one moved down with weight 0 left out
    assert weighted["reclassified"] == {"events_up": 2, "events_down": 1, "nonevents_up": 1, "nonevents_down": 1}
    assert weighted["nri_events"]["value"] == pytest.approx((2 + 1 - 1) / 4)  # the first event counts twice
