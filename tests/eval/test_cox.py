"""The Cox baselines: they recover the simulator's hazard ratios from the follow-up cadft computes, are fitted on train
only, tuned on validation, on the run's terms, and left out where there is no follow-up."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from cadft.config.compose import compose
from cadft.config.validate import validate_group
from cadft.data.followup import EVENT, STATUS, TIME
from cadft.data.task import OPTIONAL_FIELDS, Definition, label
from cadft.data.ukb.read import read_extract
from cadft.eval.baselines.common import Terms
from cadft.eval.baselines.cox import DURATION, EVENT_COLUMN, fit_cox
from cadft.eval.baselines.run import fit_baselines
from cadft.synth.hazards import LOG_HAZARD_RATIOS
from cadft.synth.simulate import simulate
from cadft.synth.write import Layout, write_cohort
from tests.eval.test_baselines import ALL, FEATURES, SETTINGS, synthetic_table

HORIZON = 10.0


def test_cox_recovers_the_simulators_hazard_ratios(tmp_path):
    """100,000 synthetic participants: the follow-up time and status cadft derives from their extract (label()),
    and the true values of the terms of their CAD hazard (cadft.synth.hazards). A Cox model of those terms must find
    each log hazard ratio of the simulator inside its confidence interval, the 13 intervals at a family-wise 95%
    (Bonferroni). Misread follow-up (times, censoring by death or loss, the Welsh data end) would move them."""
    sim = simulate(100_000, 0)
    extract_path = tmp_path / "cohort.parquet"
    write_cohort(sim, extract_path, tmp_path / "oracle.csv", Layout("parquet", "raw", "json", "showcase"))
    definition = Definition.from_config(validate_group(compose("config", ["task=hard_cad"]), "task"))
    extract = read_extract(extract_path, definition.required_fields(), optional_ids=OPTIONAL_FIELDS, fmt="parquet")
    followed = label(extract, definition).filter(pl.col("included")).select("eid", TIME, STATUS)
    truth = {"log_pce_hazard": 1.0, **LOG_HAZARD_RATIOS}
    rows = followed.join(sim.hazard_terms, on="eid")
    assert rows.height == followed.height > 90_000
    frame = rows.select(*truth).to_pandas().astype(float)
    frame[DURATION], frame[EVENT_COLUMN] = rows[TIME].to_numpy(), (rows[STATUS].to_numpy() == EVENT).astype(int)
    assert frame[EVENT_COLUMN].sum() > 4000
    model = fit_cox(frame, penalizer=0.0, alpha=0.05 / len(truth))
    intervals = model.confidence_intervals_
    for name, log_hazard_ratio in truth.items():
        low, high = intervals.loc[name]
        assert low <= log_hazard_ratio <= high, f"{name}: {log_hazard_ratio} outside [{low:.3f}, {high:.3f}]"


def with_follow_up(table: pl.DataFrame, seed: int = 0, *, rate_only: bool = False):
    """tests/eval/test_baselines.py's table with follow-up: exponential event times (their rate from age, sex and
    smoking), deaths, censoring from 3 to 20 years, cut at the horizon; the label from them. `rate_only`: the rate."""
    rng = np.random.default_rng(seed)
    n = table.height
    age, male = table["age"].to_numpy(), (table["sex"] == "Male").to_numpy()
    smoker = (table["smoking"] == "Current").fill_null(False).to_numpy()
    rate = 0.004 * np.exp(0.07 * (age - 55) + 0.6 * male + 0.5 * smoker)
    if rate_only:
        return rate
    ends = [rng.exponential(1 / rate), rng.exponential(1 / 0.006, n), rng.uniform(3, 20, n)]
    time = np.minimum.reduce([*ends, np.full(n, HORIZON)])
    status = np.where(time == ends[0], EVENT, np.where(time == ends[1], 2, 0))
    return table.with_columns(
        pl.Series("label", (status == EVENT).astype(np.int8)),
        pl.Series(TIME, time),
        pl.Series(STATUS, status.astype(np.int8)),
    )


@pytest.fixture(scope="module")
def followed():
    return with_follow_up(synthetic_table())


def test_cox_is_fitted_on_train_only_and_tuned_on_validation(followed):
    outside_train = pl.col("split") != "train"
    fixed = replace(SETTINGS, cox_penalizer=[0.01])
    original = fit_baselines(followed, ALL, SETTINGS, seed=0, which=("cox",), horizon=HORIZON)["cox"]
    assert original.info["tuned"]["penalizer"] in SETTINGS.cox_penalizer
    test = original.test
    test_rows = followed.filter(pl.col("split") == "test")
    assert test["eid"].to_list() == test_rows["eid"].to_list()
    true_rate = with_follow_up(test_rows, rate_only=True)
    assert roc_auc_score(test["label"], test["prob"]) > roc_auc_score(test["label"], true_rate) - 0.03
    assert 0 < test["prob"].min() < test["prob"].max() < 1
    assert set(test.columns) >= {"eid", "label", "prob", TIME, STATUS}
    shuffled = followed.with_columns(  # other follow-up outside train: the same model
        pl.when(outside_train).then(pl.col(TIME).shuffle(seed=1)).otherwise(pl.col(TIME)).alias(TIME),
        pl.when(outside_train).then(pl.col(STATUS).shuffle(seed=2)).otherwise(pl.col(STATUS)).alias(STATUS),
    )
    fixed_original = fit_baselines(followed, ALL, fixed, seed=0, which=("cox",), horizon=HORIZON)["cox"]
    changed = fit_baselines(shuffled, ALL, fixed, seed=0, which=("cox",), horizon=HORIZON)["cox"]
    assert changed.test["prob"].to_list() == fixed_original.test["prob"].to_list()
    retrained = followed.with_columns(
        pl.when(outside_train).then(pl.col(STATUS)).otherwise(pl.col(STATUS).shuffle(seed=3)).alias(STATUS)
    )
    assert (
        fit_baselines(retrained, ALL, fixed, seed=0, which=("cox",), horizon=HORIZON)["cox"].test["prob"].to_list()
        != fixed_original.test["prob"].to_list()
    )
    # the risk is the model's at the horizon: lower at 5 years
    shorter = fit_baselines(followed, ALL, fixed, seed=0, which=("cox",), horizon=HORIZON / 2)["cox"]
    assert (shorter.test["prob"].to_numpy() < fixed_original.test["prob"].to_numpy()).all()


def test_cox_on_the_runs_terms(followed):
    train = followed.filter(pl.col("split") == "train")
    eids = train["eid"].head(1200).to_numpy()
    terms = Terms(["age", "sex", "smoking"], FEATURES, eids)
    scored = fit_baselines(followed, terms, SETTINGS, seed=0, which=("cox", "cox_all"), horizon=HORIZON)
    assert scored["cox"].info["features"] == ["age", "sex", "smoking"] and scored["cox"].info["train_records"] == 1200
    assert scored["cox_all"].info["features"] == FEATURES and scored["cox_all"].info["train_records"] == train.height


def test_cox_is_left_out_without_follow_up(caplog):
    table = synthetic_table(1500, seed=2)  # no followup_years: a prevalent outcome's table
    with caplog.at_level(logging.WARNING):
        scored = fit_baselines(table, ALL, SETTINGS, seed=0, which=("logistic", "cox"))
    assert list(scored) == ["logistic"] and "the Cox baselines are left out" in caplog.text
