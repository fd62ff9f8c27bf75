"""Classical baselines on the language model's split: fitted on train only, threshold on validation, scored on test.

- logistic: logistic regression on median-imputed, scaled numbers (plus missing indicators) and one-hot labels
  (missing is its own category).
- lightgbm: gradient-boosted trees with native categorical splits, fixed seed, deterministic.
- pce: the Pooled Cohort Equations 10-year ASCVD risk (no fitting); missing numeric inputs get train medians.
- oracle (synthetic cohorts): the simulator's true risk, the ceiling any model can reach.

A baseline's metrics.json is evaluate_scores' schema plus `baseline`: {name, fitted_on} (and, for pce,
`imputed_participants`: split -> participants with at least one imputed input).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightgbm
import numpy as np
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cadft.errors import CadftError
from cadft.eval.metrics import evaluate_scores
from cadft.eval.report import write_report
from cadft.pce import pce_risk
from cadft.split import SPLITS

log = logging.getLogger(__name__)

BASELINES = ("logistic", "lightgbm", "pce")
SUBGROUP_COLUMNS = ("sex", "age")
MISSING_CATEGORY = "Missing"
# Ethnicity labels (coding 1001) of the Black group; the mixed "White and Black ..." labels are not in it.
BLACK_ETHNICITIES = ("Black or Black British", "Caribbean", "African", "Any other Black background")
PCE_NUMERIC_INPUTS = ("age", "cholesterol", "hdl", "systolic_bp")  # imputed with train medians when missing
PCE_LABEL_INPUTS = ("sex", "ethnicity", "bp_medication", "smoking", "diabetes")  # compared with labels; missing is "not"
FITTED_ON = {"logistic": "train", "lightgbm": "train", "pce": "nothing (published equations)", "oracle": "nothing (the simulator's true risk)"}
# One thread: OpenMP workers spin-wait, and on a busy machine a two-thread fit once took minutes instead of 0.1 s.
LIGHTGBM_PARAMS = {"n_estimators": 300, "learning_rate": 0.03, "num_leaves": 15, "min_child_samples": 50,
                   "reg_lambda": 1.0, "n_jobs": 1, "deterministic": True, "force_row_wise": True, "verbose": -1}


def fit_baselines(table: pl.DataFrame, feature_names: list[str], *, seed: int,
                  which=BASELINES) -> dict[str, tuple[pl.DataFrame, pl.DataFrame]]:
    """name -> (validation scores, test scores), frames of eid, label, prob (+ sex, age where the table has them)."""
    unknown = sorted(set(which) - set(BASELINES))
    if unknown:
        raise CadftError(f"unknown baseline(s) {', '.join(unknown)}; allowed: {', '.join(BASELINES)}")
    if not feature_names:
        raise CadftError("the prepared table has no feature columns (seed-JSON data carries only text): classical baselines need features")
    absent = [name for name in feature_names if name not in table.columns]
    if absent:
        raise CadftError(f"feature column(s) {', '.join(absent)} are not in the prepared table")
    splits = _splits(table)
    fitters = {"logistic": _logistic_scores, "lightgbm": _lightgbm_scores, "pce": lambda s, _f, _seed: _pce_scores(s)}
    results = {}
    for name in which:
        validation_prob, test_prob = fitters[name](splits, list(feature_names), seed)
        results[name] = (_score_frame(splits["validation"], validation_prob), _score_frame(splits["test"], test_prob))
    return results


def _splits(table: pl.DataFrame) -> dict[str, pl.DataFrame]:
    absent = [c for c in ("eid", "label", "split") if c not in table.columns]
    if absent:
        raise CadftError(f"the prepared table lacks column(s) {', '.join(absent)}")
    splits = {name: table.filter(pl.col("split") == name) for name in SPLITS}
    empty = [name for name, rows in splits.items() if rows.height == 0]
    if empty:
        raise CadftError(f"the prepared table has no {', '.join(empty)} rows; baselines need train, validation and test")
    if splits["train"]["label"].n_unique() < 2:
        raise CadftError("the train split has only one class: a baseline cannot be fitted")
    return splits


def _score_frame(rows: pl.DataFrame, prob: np.ndarray) -> pl.DataFrame:
    return rows.select("eid", "label", *[c for c in SUBGROUP_COLUMNS if c in rows.columns]).with_columns(pl.Series("prob", prob, pl.Float64))


def _feature_kinds(table: pl.DataFrame, feature_names: list[str]) -> tuple[list[str], list[str]]:
    numeric = [name for name in feature_names if table[name].dtype.is_numeric()]
    return numeric, [name for name in feature_names if name not in numeric]


def _with_missing_category(rows: pl.DataFrame, categorical: list[str]) -> pl.DataFrame:
    return rows.with_columns(pl.col(c).cast(pl.String).fill_null(MISSING_CATEGORY) for c in categorical)


def _logistic_scores(splits: dict[str, pl.DataFrame], feature_names: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    numeric, categorical = _feature_kinds(splits["train"], feature_names)
    columns = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler()), numeric),
        ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
    ])
    model = make_pipeline(columns, LogisticRegression(max_iter=5000, random_state=seed))
    frames = {name: _with_missing_category(rows.select(feature_names), categorical) for name, rows in splits.items()}
    model.fit(frames["train"], splits["train"]["label"].to_numpy())
    return model.predict_proba(frames["validation"])[:, 1], model.predict_proba(frames["test"])[:, 1]


def _lightgbm_scores(splits: dict[str, pl.DataFrame], feature_names: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    numeric, categorical = _feature_kinds(splits["train"], feature_names)
    train = _with_missing_category(splits["train"], categorical)
    # Category codes come from train alone; a label first seen in validation/test becomes NaN (LightGBM: missing).
    codes = {c: {value: i for i, value in enumerate(sorted(train[c].unique().to_list()))} for c in categorical}

    def matrix(rows: pl.DataFrame) -> np.ndarray:
        rows = _with_missing_category(rows, categorical)
        encoded = [pl.col(c).replace_strict(codes[c], default=None, return_dtype=pl.Float64) for c in categorical]
        return rows.select(*[pl.col(c).cast(pl.Float64) for c in numeric], *encoded).to_numpy().astype(np.float64)

    model = lightgbm.LGBMClassifier(random_state=seed, **LIGHTGBM_PARAMS)
    model.fit(matrix(train), train["label"].to_numpy(), categorical_feature=list(range(len(numeric), len(feature_names))))
    return model.predict_proba(matrix(splits["validation"]))[:, 1], model.predict_proba(matrix(splits["test"]))[:, 1]


def _pce_scores(splits: dict[str, pl.DataFrame]) -> tuple[np.ndarray, np.ndarray]:
    absent = [c for c in PCE_NUMERIC_INPUTS + PCE_LABEL_INPUTS if c not in splits["train"].columns]
    if absent:
        raise CadftError(f"the Pooled Cohort Equations need feature column(s) {', '.join(absent)}, which the prepared table "
                         f"lacks; add them to data.features or leave pce out of the baselines")
    medians = {c: splits["train"][c].cast(pl.Float64).median() for c in PCE_NUMERIC_INPUTS}
    unmeasured = [c for c, median in medians.items() if median is None]
    if unmeasured:
        raise CadftError(f"PCE input(s) {', '.join(unmeasured)} are missing for every train participant: no median to impute")
    return tuple(_pce_risk_of(splits[name], medians, name) for name in ("validation", "test"))


def _pce_risk_of(rows: pl.DataFrame, medians: dict[str, float], split: str) -> np.ndarray:
    missing = {c: rows[c].null_count() for c in PCE_NUMERIC_INPUTS if rows[c].null_count()}
    if missing:
        log.warning("PCE %s: %d of %d participants had missing inputs imputed with train medians (%s)", split,
                    pce_imputed_participants(rows), rows.height, ", ".join(f"{c} {n}" for c, n in missing.items()))
    number = {c: rows[c].cast(pl.Float64).fill_null(medians[c]).to_numpy() for c in PCE_NUMERIC_INPUTS}

    def equals(column: str, *labels: str) -> np.ndarray:
        return rows[column].cast(pl.String).is_in(labels).fill_null(False).to_numpy()

    return pce_risk(age=number["age"], female=equals("sex", "Female"), black=equals("ethnicity", *BLACK_ETHNICITIES),
                    total_chol_mmol=number["cholesterol"], hdl_mmol=number["hdl"], sbp=number["systolic_bp"],
                    bp_treated=equals("bp_medication", "Yes"), smoker=equals("smoking", "Current"), diabetes=equals("diabetes", "Yes"))


def pce_imputed_participants(rows: pl.DataFrame) -> int:
    """Participants of `rows` with at least one PCE numeric input missing (scored with a train median instead)."""
    return int(rows.select(pl.any_horizontal(pl.col(c).is_null() for c in PCE_NUMERIC_INPUTS).sum()).item())


def oracle_scores(table: pl.DataFrame, oracle_path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(validation, test) frames whose prob is the synthetic cohort's true risk (the `cadft-synth` oracle file)."""
    path = Path(oracle_path)
    if not path.is_file():
        raise CadftError(f"oracle file {path}: no such file")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    columns = pl.read_parquet_schema(path).names() if parquet else pl.read_csv(path, n_rows=0).columns
    if not {"eid", "risk"} <= set(columns):
        raise CadftError(f"oracle file {path} has columns {', '.join(columns)}; expected eid and risk (written by cadft-synth)")
    oracle = (pl.read_parquet(path, columns=["eid", "risk"]) if parquet else pl.read_csv(path, columns=["eid", "risk"]))
    oracle = oracle.select(pl.col("eid").cast(pl.Int64), pl.col("risk").cast(pl.Float64))
    if oracle["eid"].n_unique() != oracle.height:
        raise CadftError(f"oracle file {path} lists some eids more than once")
    splits = _splits(table)
    frames = []
    for name in ("validation", "test"):
        rows = splits[name].join(oracle, on="eid", how="left")
        unscored = rows["risk"].null_count()
        if unscored:
            raise CadftError(f"oracle file {path} has no risk for {unscored} of {rows.height} {name} participants; the oracle is the "
                             f"incident risk of people free of CAD at baseline, so it only applies to incident tasks of the same cohort")
        frames.append(_score_frame(rows, rows["risk"].to_numpy()))
    return frames[0], frames[1]


def run_baselines(table: pl.DataFrame, feature_names: list[str], eval_cfg, out_dir, *, seed: int, oracle_path=None,
                  which=BASELINES) -> dict[str, dict]:
    """Fit every baseline (and score the oracle when given), evaluate each, write out_dir/<name>/; name -> metrics."""
    scores = fit_baselines(table, feature_names, seed=seed, which=which)
    if oracle_path is not None:
        scores["oracle"] = oracle_scores(table, oracle_path)
    results = {}
    for name, (validation, test) in scores.items():
        metrics = evaluate_scores(validation, test, eval_cfg, seed=seed)
        metrics["baseline"] = {"name": name, "fitted_on": FITTED_ON[name]}
        if name == "pce":
            metrics["baseline"]["imputed_participants"] = {
                split: pce_imputed_participants(table.filter(pl.col("split") == split)) for split in ("validation", "test")}
        others = {other: frames[1] for other, frames in scores.items() if other != name}
        write_report(Path(out_dir) / name, validation, test, metrics, curves=others, plots=bool(eval_cfg.get("plots")))
        results[name] = metrics
    return results
