"""The baselines' own attributions: logistic regression's coefficient × centred value adds up to its log-odds minus
their training mean, LightGBM's TreeSHAP to its log-odds minus the expected; occlusion by the median agrees in sign
with logistic regression's coefficient on every feature; the history's item columns count toward their source."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.special import logit

from cadft.config import CONF_DIR
from cadft.config.validate import load_group_file
from cadft.data.features import parse_features
from cadft.eval.baselines.classical import fit_lightgbm, fit_logistic
from cadft.explain.baselines import baseline_attributions, lightgbm_contributions, logistic_contributions
from cadft.explain.occlusion import reference_values, with_part

NUMBERS = ["age", "systolic_bp", "hdl", "cholesterol"]
FEATURES = parse_features(
    {
        "age": {"field": 21022},
        "systolic_bp": {"kind": "mean", "fields": [4080, 93]},
        "hdl": {"field": 30760},
        "cholesterol": {"field": 30690},
        "smoking": {"field": 20116},
    }
)


def prepared(n: int = 900, seed: int = 0, history: bool = False) -> pl.DataFrame:
    """A prepared table (eid, label, split, text, features) whose label follows a logistic model of the features."""
    rng = np.random.default_rng(seed)
    age, sbp, hdl = rng.uniform(40, 70, n), rng.normal(138, 18, n), rng.lognormal(np.log(1.4), 0.25, n)
    chol = rng.normal(5.7, 1.0, n)
    smoking = rng.choice(["Never", "Previous", "Current"], n, p=[0.55, 0.33, 0.12])
    angina = rng.random(n) < 0.15
    log_odds = -3.3 + 0.09 * (age - 55) + 0.02 * (sbp - 138) - 1.5 * (hdl - 1.4) + 0.8 * (smoking == "Current")
    log_odds += 1.2 * angina if history else 0.0
    table = pl.DataFrame(
        {
            "eid": np.arange(1, n + 1),
            "label": (rng.random(n) < 1 / (1 + np.exp(-log_odds))).astype(np.int64),
            "split": np.where(np.arange(n) % 10 < 7, "train", np.where(np.arange(n) % 10 < 9, "validation", "test")),
            "text": "",
            "age": np.round(age),
            "systolic_bp": np.where(rng.random(n) < 0.05, np.nan, np.round(sbp)),
            "hdl": np.round(hdl, 2),
            "cholesterol": np.round(chol, 2),
            "smoking": smoking,
        }
    ).with_columns(pl.col("systolic_bp").fill_nan(None))
    if history:
        items = [["41270:I209"] if a else [] for a in angina]
        table = table.with_columns(pl.Series("history", items, pl.List(pl.String)))
    return table


@pytest.fixture(scope="module")
def settings():
    return load_group_file(CONF_DIR / "baselines" / "default.yaml", "baselines")


def splits_of(table: pl.DataFrame) -> dict[str, pl.DataFrame]:
    return {name: table.filter(pl.col("split") == name) for name in ("train", "validation", "test")}


def test_logistic_occlusion_by_the_median_agrees_in_sign_with_the_coefficient_on_every_feature(settings):
    splits = splits_of(prepared())
    fitted = fit_logistic(splits, [*NUMBERS, "smoking"], settings, seed=0)
    regression, encoder = fitted.model[-1], fitted.model[0].named_transformers_["categorical"]
    coefficient = dict(zip(NUMBERS, regression.coef_[0][: len(NUMBERS)]))
    smoking = dict(zip(encoder.categories_[0], regression.coef_[0][-len(encoder.categories_[0]) :]))
    reference = reference_values(splits["train"], FEATURES, [*NUMBERS, "smoking"])
    rows = splits["test"]
    whole = logit(fitted.probabilities(rows))
    for feature in [*NUMBERS, "smoking"]:
        delta = whole - logit(fitted.probabilities(with_part(rows, feature, reference[feature])))
        if feature == "smoking":
            expected = np.sign([smoking[value] - smoking[reference["smoking"]] for value in rows["smoking"]])
        else:
            value = rows[feature].cast(pl.Float64).to_numpy()
            expected = np.sign(coefficient[feature]) * np.sign(value - reference[feature])
            expected[np.isnan(value)] = np.sign(delta[np.isnan(value)])  # missing: imputed, nothing to compare
        moved = np.abs(delta) > 1e-12
        assert moved.sum() > 0.3 * rows.height, feature  # the rest are at the median (or the most common label)
        assert (np.sign(delta[moved]) == expected[moved]).all(), feature
    assert coefficient["hdl"] < 0 < coefficient["age"]  # the simulated directions, recovered


def test_attributions_add_up_to_the_log_odds(settings):
    splits = splits_of(prepared())
    rows, train = splits["test"], splits["train"]
    logistic = fit_logistic(splits, [*NUMBERS, "smoking"], settings, seed=0)
    contributions = logistic_contributions(logistic, rows, train)
    decision = logistic.model.decision_function(logistic.inputs(rows))
    centre = logistic.model.decision_function(logistic.inputs(train)).mean()
    np.testing.assert_allclose(contributions.sum(axis=1), decision - centre, atol=1e-9)
    assert contributions.shape == (rows.height, 5) and (np.abs(contributions) > 0).any(axis=0).all()
    gbm = fit_lightgbm(splits, [*NUMBERS, "smoking"], settings, seed=0)
    shap = lightgbm_contributions(gbm, rows)
    raw = gbm.model.predict(gbm.inputs(rows), raw_score=True)
    expected = gbm.model.predict(gbm.inputs(rows), pred_contrib=True)[:, -1]
    np.testing.assert_allclose(shap.sum(axis=1) + expected, raw, atol=1e-9)


def test_the_history_items_count_toward_their_source(make_config):
    table = prepared(history=True)
    config = make_config(
        "text.features=[age,systolic_bp,hdl,cholesterol,smoking]", "text.history=on", "explain.baselines=[logistic]"
    )
    train = table.filter(pl.col("split") == "train")
    eids = table.filter(pl.col("split") == "test")["eid"].to_list()
    parts = [*NUMBERS, "smoking", "history:illnesses", "history:diagnoses"]
    frame = baseline_attributions(table, config, train, eids, parts)
    assert set(frame["feature"]) == set(parts) and set(frame["model"]) == {"logistic"}
    diagnoses = frame.filter(pl.col("feature") == "history:diagnoses").join(table.select("eid", "history"), on="eid")
    with_angina = diagnoses.filter(pl.col("history").list.len() > 0)
    assert with_angina.height and (with_angina["delta_logit"] > 0).all()  # angina raised the simulated risk
    assert (frame.filter(pl.col("feature") == "history:illnesses")["delta_logit"] == 0).all()
    moved = frame.filter(pl.col("delta_logit").abs() > 1e-9)  # the recalibrated risk moves the same way
    assert (np.sign(moved["delta_risk"]) == np.sign(moved["delta_logit"])).all()
