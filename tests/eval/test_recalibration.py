"""Recalibration: each method on scores with a known answer, save/reload round trips, never a reversed ranking."""

import numpy as np
import polars as pl
import pytest
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from cadft.errors import CadftError
from cadft.eval import recalibration
from cadft.eval.metrics import evaluate_scores
from cadft.eval.recalibration import Recalibrator, TrainingSample
from tests.eval.test_metrics import eval_config


def population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(label, true risk) with ~4% prevalence."""
    rng = np.random.default_rng(seed)
    risk = expit(rng.normal(-3.6, 1.0, n))
    return (rng.random(n) < risk).astype(np.int64), risk


def test_prior_shift_exactly_undoes_a_known_enrichment():
    label, risk = population(50_000, seed=0)
    # A model trained on every case plus as many controls (case fraction 0.5) with class weights 1:3 learns these odds.
    sample = TrainingSample(
        population_cases=int(label.sum()), population_n=label.size, sample_fraction=0.5, class_weights=(1.0, 3.0)
    )
    pi = label.mean()
    enriched = expit(logit(risk) + np.log(0.5 / 0.5) + np.log(3.0) - np.log(pi / (1 - pi)))
    fitted = recalibration.fit("prior_shift", label, enriched, sample=sample)
    np.testing.assert_allclose(fitted.apply(enriched), risk, rtol=1e-9)
    assert fitted.fitted_on == "training sample (analytic)"


def test_platt_recovers_a_known_intercept_and_slope():
    label, risk = population(200_000, seed=1)
    distorted = expit(0.5 * logit(risk) + 1.0)  # the right map back: a = -2, b = 2
    fitted = recalibration.fit("platt", label, distorted)
    assert fitted.params["intercept"] == pytest.approx(-2.0, abs=0.15) and fitted.params["slope"] == pytest.approx(
        2.0, abs=0.1
    )
    assert fitted.apply(distorted).mean() == pytest.approx(label.mean(), rel=1e-3)  # MLE: mean risk = observed rate


def test_platt_never_reverses_the_ranking():
    label, risk = population(5_000, seed=2)
    reversed_score = 1 - risk  # ranks validation the wrong way (an untrained model can)
    fitted = recalibration.fit("platt", label, reversed_score)
    assert fitted.params == {"intercept": pytest.approx(fitted.params["intercept"]), "slope": 1.0, "slope_fixed": 1}
    recalibrated = fitted.apply(reversed_score)
    assert roc_auc_score(label, recalibrated) == pytest.approx(roc_auc_score(label, reversed_score))
    assert recalibrated.mean() == pytest.approx(label.mean(), rel=1e-6)


def test_isotonic_matches_scikit_learn_and_clips():
    label, risk = population(20_000, seed=3)
    score = expit(logit(risk) + 2.0)
    fitted = recalibration.fit("isotonic", label, score)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(score, label)
    probe = np.r_[0.0, np.linspace(0, 1, 1001), 1.0]
    np.testing.assert_allclose(fitted.apply(probe), reference.predict(probe), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["platt", "isotonic", "prior_shift", "none"])
def test_every_method_round_trips_through_save_and_reload(tmp_path, method):
    label, risk = population(5_000, seed=4)
    score = expit(logit(risk) + 1.5)
    sample = TrainingSample(int(label.sum()), label.size, 0.3)
    fitted = recalibration.fit(method, label, score, sample=sample)
    reloaded = Recalibrator.load(fitted.save(tmp_path / "calibrator.json"))
    assert reloaded == fitted
    np.testing.assert_array_equal(reloaded.apply(score), fitted.apply(score))
    assert TrainingSample.load(sample.save(tmp_path / "training_sample.json")) == sample


def test_bad_calibrator_files_and_methods(tmp_path):
    (tmp_path / "c.json").write_text('{"method": "magic", "fitted_on": "x", "params": {}}')
    with pytest.raises(CadftError, match="allowed: platt, isotonic, prior_shift, none"):
        Recalibrator.load(tmp_path / "c.json")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(CadftError, match="not a readable cadft calibrator"):
        Recalibrator.load(tmp_path / "c.json")
    with pytest.raises(CadftError, match="prior_shift needs the training sample"):
        recalibration.fit("prior_shift", np.array([0, 1]), np.array([0.2, 0.8]))


def test_headline_metrics_are_on_the_recalibrated_risk_and_raw_ones_stay_under_raw():
    label, risk = population(8_000, seed=5)
    score = expit(logit(risk) + 2.5)  # enriched: mean score ~8x the prevalence
    frame = pl.DataFrame({"eid": np.arange(label.size), "label": label, "prob": score})
    validation, test = frame.filter(pl.col("eid") % 2 == 0), frame.filter(pl.col("eid") % 2 == 1)
    metrics = evaluate_scores(validation, test, eval_config(), seed=0)
    headline, raw = metrics["test"], metrics["test"]["raw"]
    assert raw["mean_risk"] > 5 * raw["prevalence"] and raw["oe_ratio"] < 0.2
    assert 0.8 < headline["oe_ratio"] < 1.25 and 0.7 < headline["calibration_slope"] < 1.3
    assert headline["brier"] < raw["brier"] and headline["auroc"] == pytest.approx(raw["auroc"])
    assert metrics["recalibration"]["method"] == "platt" and metrics["recalibration"]["fitted_on"] == "validation"
