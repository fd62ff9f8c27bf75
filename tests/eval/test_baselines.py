"""Classical baselines: fitted on train only, tuned on validation, on the run's terms (same eids and features), PCE
through the feature mapping, the oracle join."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from cadft.config import CONF_DIR
from cadft.config.validate import load_group_file
from cadft.errors import CadftError
from cadft.eval.baselines.common import Terms
from cadft.eval.baselines.oracle import oracle_scores
from cadft.eval.baselines.pce import MG_DL_PER_MMOL_L, pce_risk
from cadft.eval.baselines.run import fit_baselines, run_baselines

SETTINGS = load_group_file(CONF_DIR / "baselines" / "default.yaml", "baselines")
FEATURES = [
    "age",
    "sex",
    "ethnicity",
    "cholesterol",
    "hdl",
    "systolic_bp",
    "bp_medication",
    "smoking",
    "diabetes",
    "townsend",
]
ALL = Terms(FEATURES, FEATURES)


def synthetic_table(n: int = 4000, seed: int = 0) -> pl.DataFrame:
    """A prepared-like table whose label depends on age, sex, smoking, HDL and SBP; townsend is noise."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 70, n)
    male = rng.random(n) < 0.45
    smoking = rng.choice(["Never", "Previous", "Current", "Prefer not to answer"], n, p=[0.55, 0.33, 0.1, 0.02])
    hdl = rng.normal(1.45, 0.35, n).clip(0.5)
    sbp = rng.normal(138, 18, n)
    risk = expit(-9.3 + 0.1 * age + 1.0 * male + 1.2 * (smoking == "Current") - 1.2 * hdl + 0.02 * sbp)
    table = pl.DataFrame(
        {
            "eid": np.arange(1_000_001, 1_000_001 + n),
            "label": (rng.random(n) < risk).astype(np.int8),
            "split": rng.choice(["train", "validation", "test"], n, p=[0.6, 0.2, 0.2]),
            "text": [""] * n,
            "age": age.round(),
            "sex": np.where(male, "Male", "Female"),
            "ethnicity": rng.choice(
                ["British", "Irish", "Caribbean", "African", "Indian"], n, p=[0.8, 0.05, 0.05, 0.05, 0.05]
            ),
            "cholesterol": rng.normal(5.7, 1.1, n).clip(2.5),
            "hdl": hdl,
            "systolic_bp": sbp,
            "bp_medication": rng.choice(["Yes", "No"], n, p=[0.2, 0.8]),
            "smoking": smoking,
            "diabetes": rng.choice(["Yes", "No", "Do not know"], n, p=[0.05, 0.94, 0.01]),
            "townsend": rng.normal(-1.3, 3, n),
        }
    )
    gaps = rng.random((n, 2)) < 0.05  # missing values: medians/indicators (numbers), a category of their own (labels)
    return table.with_columns(
        pl.when(pl.Series(gaps[:, 0])).then(None).otherwise(pl.col("hdl")).alias("hdl"),
        pl.when(pl.Series(gaps[:, 1])).then(None).otherwise(pl.col("smoking")).alias("smoking"),
    )


@pytest.fixture(scope="module")
def table():
    return synthetic_table()


@pytest.fixture(scope="module")
def fitted(table):
    return fit_baselines(table, ALL, SETTINGS, seed=1, which=("logistic", "lightgbm"))


@pytest.mark.parametrize("name", ["logistic", "lightgbm"])
def test_fitted_baselines_beat_chance_clearly(fitted, table, name):
    validation, test = fitted[name].validation, fitted[name].test
    assert validation["eid"].to_list() == table.filter(pl.col("split") == "validation")["eid"].to_list()
    assert set(test.columns) == {"eid", "label", "prob", "sex", "age", "ethnicity", "townsend"}
    assert roc_auc_score(test["label"], test["prob"]) > 0.7


@pytest.mark.parametrize("name", ["logistic", "lightgbm"])
def test_baselines_are_fitted_on_train_only(fitted, table, name):
    outside_train = pl.col("split") != "train"
    relabelled = table.with_columns(
        pl.when(outside_train).then(1 - pl.col("label")).otherwise(pl.col("label")).alias("label")
    )
    # One setting, no early stopping: tuning (the only use of validation labels) is tested below.
    fixed = replace(
        SETTINGS,
        logistic_c=[1.0],
        lightgbm=replace(
            SETTINGS.lightgbm, num_leaves=[8], learning_rate=[0.05], max_trees=200, early_stopping_rounds=0
        ),
    )
    original = fit_baselines(table, ALL, fixed, seed=1, which=(name,))[name]
    changed = fit_baselines(relabelled, ALL, fixed, seed=1, which=(name,))[name]
    assert changed.validation["prob"].to_list() == original.validation["prob"].to_list()
    assert changed.test["prob"].to_list() == original.test["prob"].to_list()
    retrained = table.with_columns(
        pl.when(outside_train).then(pl.col("label")).otherwise(1 - pl.col("label")).alias("label")
    )
    assert (
        fit_baselines(retrained, ALL, fixed, seed=1, which=(name,))[name].validation["prob"].to_list()
        != original.validation["prob"].to_list()
    )


def test_hyperparameters_are_tuned_on_validation(fitted):
    assert fitted["logistic"].info["tuned"]["C"] in SETTINGS.logistic_c
    tuned = fitted["lightgbm"].info["tuned"]
    assert (
        tuned["num_leaves"] in SETTINGS.lightgbm.num_leaves and 1 <= tuned["trees"] < SETTINGS.lightgbm.max_trees
    )  # early stopping


def test_equal_terms_use_exactly_the_runs_training_eids_and_features(table):
    train = table.filter(pl.col("split") == "train")
    eids = (
        train.filter(pl.col("label") == 1)["eid"].to_list()
        + train.filter(pl.col("label") == 0)["eid"].head(300).to_list()
    )
    terms = Terms(["age", "sex", "smoking"], FEATURES, np.array(eids))
    scored = fit_baselines(table, terms, SETTINGS, seed=0, which=("logistic", "lightgbm", "logistic_all", "age"))
    for name in ("logistic", "lightgbm"):
        assert scored[name].info["features"] == ["age", "sex", "smoking"] and scored[name].info["train_records"] == len(
            eids
        )
    assert scored["age"].info["features"] == ["age"] and scored["age"].info["train_records"] == len(eids)
    assert (
        scored["logistic_all"].info["features"] == FEATURES
        and scored["logistic_all"].info["train_records"] == train.height
    )
    # prior_shift knows the equal-terms sample is case-enriched relative to the training split
    assert scored["logistic"].sample.sample_fraction > scored["logistic_all"].sample.sample_fraction
    # the records really are the run's: a model fitted on other records scores differently
    other = Terms(["age", "sex", "smoking"], FEATURES, train["eid"].tail(len(eids)).to_numpy())
    assert (
        fit_baselines(table, other, SETTINGS, seed=0, which=("logistic",))["logistic"].test["prob"].to_list()
        != scored["logistic"].test["prob"].to_list()
    )
    with pytest.raises(CadftError, match="3 of the run's training eids are not in the prepared table's training split"):
        fit_baselines(
            table, Terms(FEATURES, FEATURES, np.array(eids + [1, 2, 3])), SETTINGS, seed=0, which=("logistic",)
        )


def guideline_table() -> pl.DataFrame:
    """Train participants for the medians, then the guideline's worked examples in test (white, untreated,
    non-smokers)."""
    people = synthetic_table(300, seed=5).with_columns(pl.lit("train").alias("split"), pl.lit(1.3).alias("hdl"))
    example = {
        "label": 0,
        "text": "",
        "age": 55.0,
        "ethnicity": "British",
        "cholesterol": 213 / MG_DL_PER_MMOL_L,
        "hdl": 50 / MG_DL_PER_MMOL_L,
        "systolic_bp": 120.0,
        "bp_medication": "No",
        "smoking": "Never",
        "diabetes": "No",
        "townsend": 0.0,
    }
    rows = [
        example | {"eid": 1, "split": "test", "sex": "Female"},
        example | {"eid": 2, "split": "test", "sex": "Male", "label": 1},
        example | {"eid": 3, "split": "test", "sex": "Female", "ethnicity": "Caribbean", "hdl": None},
        example
        | {
            "eid": 4,
            "split": "validation",
            "sex": "Male",
            "smoking": "Current",
            "bp_medication": "Yes",
            "diabetes": "Yes",
        },
        example | {"eid": 5, "split": "validation", "sex": "Male", "smoking": None, "label": 1},
    ]
    return pl.concat([people, pl.DataFrame(rows, schema=people.schema)])


def test_pce_reproduces_the_guideline_worked_example_through_the_feature_mapping():
    scored = fit_baselines(guideline_table(), ALL, SETTINGS, seed=0, which=("pce",))["pce"]
    validation, test = scored.validation, scored.test
    woman, man, black_woman_without_hdl = test.sort("eid")["prob"].to_list()
    assert woman == pytest.approx(0.021, abs=0.0005)
    assert man == pytest.approx(0.054, abs=0.0005)
    # Caribbean is in the Black group; her missing HDL is the train median (1.3 mmol/L).
    assert black_woman_without_hdl == pytest.approx(
        pce_risk(55, True, True, 213 / MG_DL_PER_MMOL_L, 1.3, 120, False, False, False)
    )
    treated_smoker_with_diabetes, unknown_smoking = validation.sort("eid")["prob"].to_list()
    assert treated_smoker_with_diabetes == pytest.approx(
        pce_risk(55, False, False, 213 / MG_DL_PER_MMOL_L, 50 / MG_DL_PER_MMOL_L, 120, True, True, True)
    )
    assert unknown_smoking == pytest.approx(man)  # missing smoking status is "not a current smoker"


def test_pce_names_the_columns_it_lacks(table):
    with pytest.raises(CadftError, match=r"need feature column.*cholesterol, hdl"):
        fit_baselines(
            table.drop("cholesterol", "hdl"), Terms(["age", "sex"], ["age", "sex"]), SETTINGS, seed=0, which=("pce",)
        )


def test_a_table_without_features_is_refused():
    seed_json = pl.DataFrame(
        {"eid": [1, 2, 3], "label": [0, 1, 0], "split": ["train", "validation", "test"], "text": ["a", "b", "c"]}
    )
    with pytest.raises(CadftError, match="no feature columns"):
        fit_baselines(seed_json, Terms([], []), SETTINGS, seed=0)


def test_oracle_is_joined_to_validation_and_test(tmp_path, table):
    oracle = table.select(
        "eid",
        pl.lit(0, pl.Int8).alias("prevalent"),
        (pl.col("eid") % 97 / 100).alias("risk"),
        pl.col("label").alias("incident"),
    )
    csv, parquet = tmp_path / "cohort.oracle.csv", tmp_path / "cohort.oracle.parquet"
    oracle.write_csv(csv)
    oracle.write_parquet(parquet)
    for path in (csv, parquet):
        validation, test = oracle_scores(table, path)
        assert test.height == table.filter(pl.col("split") == "test").height
        assert (test["prob"] == test["eid"] % 97 / 100).all() and validation["label"].to_list() == table.filter(
            pl.col("split") == "validation"
        )["label"].to_list()
    oracle.filter(pl.col("eid") % 10 != 0).write_csv(csv)
    with pytest.raises(CadftError, match=r"no risk for \d+ of \d+ validation participants"):
        oracle_scores(table, csv)
    oracle.rename({"risk": "p"}).write_csv(csv)
    with pytest.raises(CadftError, match="expected eid and risk"):
        oracle_scores(table, csv)


def test_run_baselines_writes_one_report_per_model(tmp_path, table, make_config):
    oracle_path = tmp_path / "oracle.csv"
    table.select("eid", pl.col("label").cast(pl.Float64).mul(0.5).add(0.2).alias("risk")).write_csv(oracle_path)
    # The seed and the oracle come from the config (the oracle predicts the default task's label).
    config = make_config("seed=3", f"data.oracle_path={oracle_path}", "eval.bootstrap=100", "eval.plots=true")
    assert config.data.oracle_task == config.task.name and config.baselines == SETTINGS
    results = run_baselines(table, ALL, config, tmp_path / "baselines")
    assert set(results) == {
        "logistic",
        "lightgbm",
        "logistic_all",
        "lightgbm_all",
        "pce",
        "pce_recalibrated",
        "age",
        "oracle",
    }
    for name, (metrics, test_risk) in results.items():
        folder = tmp_path / "baselines" / name
        assert json.loads((folder / "metrics.json").read_text()) == metrics
        assert (
            (folder / "roc.png").is_file()
            and (folder / "report.html").is_file()
            and metrics["baseline"]["name"] == name
        )
        assert test_risk["prob"].to_list() == pytest.approx(sorted_risks(folder))
    methods = {name: metrics["recalibration"]["method"] for name, (metrics, _) in results.items()}
    assert methods == {
        "logistic": "platt",
        "lightgbm": "platt",
        "logistic_all": "platt",
        "lightgbm_all": "platt",
        "age": "platt",
        "pce": "none",
        "pce_recalibrated": "platt",
        "oracle": "none",
    }
    assert results["oracle"][0]["test"]["auroc"] == 1.0
    pce, pce_recalibrated = results["pce"][0]["test"], results["pce_recalibrated"][0]["test"]
    assert pce["auroc"] == pytest.approx(pce_recalibrated["auroc"]) and abs(pce_recalibrated["oe_ratio"] - 1) < abs(
        pce["oe_ratio"] - 1
    )
    assert (
        results["pce"][0]["baseline"]["imputed_participants"]["test"]
        == table.filter((pl.col("split") == "test") & pl.col("hdl").is_null()).height
    )
    assert results["logistic"][0]["test"]["auroc"] > 0.7 and results["pce"][0]["test"]["auroc"] > 0.6


def sorted_risks(folder: Path) -> list[float]:
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    return [row["risk"] for row in sorted((r for r in rows if r["split"] == "test"), key=lambda r: r["eid"])]


@pytest.mark.parametrize("name", ["logistic", "lightgbm"])
def test_ipcw_weights_reach_the_fits_and_their_tuning(table, name):
    """task.censoring=ipcw: a record of weight 0 (censored before the horizon) moves neither the fit nor the tuning on
    validation, whatever its label; the other records' weights do."""
    rng = np.random.default_rng(4)
    weight = np.where(rng.random(table.height) < 0.1, 0.0, rng.uniform(1.0, 1.5, table.height))
    weighted = table.with_columns(pl.Series("ipcw_weight", weight))
    flipped = weighted.with_columns(
        pl.when(pl.col("ipcw_weight") == 0).then(1 - pl.col("label")).otherwise(pl.col("label")).alias("label")
    )
    small = replace(  # a grid of two and early stopping: tuning on the weighted validation split
        SETTINGS,
        logistic_c=[0.1, 1.0],
        lightgbm=replace(SETTINGS.lightgbm, num_leaves=[4, 8], learning_rate=[0.05], max_trees=300),
    )
    original = fit_baselines(weighted, ALL, small, seed=1, which=(name,))[name]
    assert fit_baselines(flipped, ALL, small, seed=1, which=(name,))[name].test["prob"].to_list() == (
        original.test["prob"].to_list()
    )
    unweighted = fit_baselines(table, ALL, small, seed=1, which=(name,))[name]
    assert unweighted.test["prob"].to_list() != original.test["prob"].to_list()
    train = weighted.filter(pl.col("split") == "train")
    cases, n = train["ipcw_weight"].to_numpy() @ train["label"].to_numpy(), train["ipcw_weight"].sum()
    assert original.sample.population_cases == pytest.approx(cases) and original.sample.population_n == pytest.approx(n)
