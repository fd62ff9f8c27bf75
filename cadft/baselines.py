"""Classical baselines on the language model's split and terms: fitted on train, tuned and recalibrated on
validation, scored once on test.

- logistic, lightgbm (equal terms): exactly the run's text features (text.features) and its training records
  (the same subsample, the same eids).
- logistic_all, lightgbm_all: every data.features column and the whole training split.
- age: logistic regression on age alone, on the run's training records.
- pce: the Pooled Cohort Equations 10-year ASCVD risk as published (no fitting, no recalibration); missing numeric
  inputs get train medians. pce_recalibrated: the same with intercept and slope refitted on validation (Platt).
- zero_shot: the untrained backbone asked the verbalizer's question (cadft.zero_shot), recalibrated on validation.
- oracle (synthetic cohorts): the simulator's true risk, the ceiling any model can reach (not recalibrated).

Logistic regression: median-imputed, scaled numbers (plus missing indicators) and one-hot labels (missing is its
own category); C chosen from `baselines.logistic_c` by validation log loss. LightGBM: native categorical splits,
num_leaves x learning_rate grid chosen by validation log loss, trees by early stopping on validation. With
text.history=on both also get the history as 0/1 columns, one per item at least HISTORY_MIN_RECORDS training records have.
A baseline's metrics.json is evaluate_scores' schema plus `baseline`: {name, fitted_on, features, train_records,
tuned} (and, for pce, `imputed_participants`: split -> participants with at least one imputed input).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm
import numpy as np
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cadft.errors import CadftError
from cadft.eval.metrics import evaluate_scores
from cadft.eval.recalibration import TrainingSample
from cadft.eval.subgroups import SUBGROUP_COLUMNS
from cadft.history import HISTORY_COLUMN
from cadft.pce import pce_risk
from cadft.split import SPLITS

log = logging.getLogger(__name__)

CLASSICAL = ("logistic", "lightgbm", "logistic_all", "lightgbm_all", "pce", "pce_recalibrated", "age")
BASELINES = (*CLASSICAL, "zero_shot")
MISSING_CATEGORY = "Missing"
# Ethnicity labels (coding 1001) of the Black group; the mixed "White and Black ..." labels are not in it.
BLACK_ETHNICITIES = ("Black or Black British", "Caribbean", "African", "Any other Black background")
PCE_NUMERIC_INPUTS = ("age", "cholesterol", "hdl", "systolic_bp")  # imputed with train medians when missing
PCE_LABEL_INPUTS = ("sex", "ethnicity", "bp_medication", "smoking", "diabetes")  # compared with labels; missing is "not"
# Recalibration each baseline gets: None = eval.recalibration, like the language model.
RECALIBRATION = {"pce": "none", "pce_recalibrated": "platt", "oracle": "none"}
# One thread: OpenMP workers spin-wait, and on a busy machine a two-thread fit once took minutes instead of 0.1 s.
HISTORY_MIN_RECORDS = 10  # a history item becomes an indicator column when this many training records have it
LIGHTGBM_FIXED = {"reg_lambda": 1.0, "n_jobs": 1, "deterministic": True, "force_row_wise": True, "verbose": -1}


@dataclass(frozen=True)
class Terms:
    """What the baselines see: the run's features and training eids (equal terms), and everything (the *_all ones)."""

    features: list[str]
    all_features: list[str]
    train_eids: np.ndarray | None = None  # None: the whole training split


@dataclass
class Scored:
    validation: pl.DataFrame  # eid, label, prob (raw score), subgroup columns
    test: pl.DataFrame
    info: dict = field(default_factory=dict)  # fitted_on, features, train_records, tuned
    sample: TrainingSample | None = None  # for eval.recalibration=prior_shift


def fit_baselines(table: pl.DataFrame, terms: Terms, settings, *, seed: int, which=CLASSICAL) -> dict[str, Scored]:
    """name -> Scored, for each classical baseline in `which` (settings: the `baselines` config group)."""
    unknown = sorted(set(which) - set(CLASSICAL))
    if unknown:
        raise CadftError(f"baselines.which names {', '.join(unknown)}; allowed here: {', '.join(CLASSICAL)}")
    if not terms.all_features:
        raise CadftError("the prepared table has no feature columns (seed-JSON data carries only text): classical baselines need features")
    absent = [name for name in terms.all_features if name not in table.columns]
    if absent:
        raise CadftError(f"feature column(s) {', '.join(absent)} are not in the prepared table")
    splits = _splits(table)
    sample_rows = splits["train"] if terms.train_eids is None else splits["train"].filter(pl.col("eid").is_in(terms.train_eids.tolist()))
    if terms.train_eids is not None and sample_rows.height != len(terms.train_eids):
        raise CadftError(f"{len(terms.train_eids) - sample_rows.height} of the run's training eids are not in the prepared table's training split")
    equal = {**splits, "train": sample_rows}
    fitters = {
        "logistic": lambda: _logistic_scores(equal, terms.features, settings, seed),
        "lightgbm": lambda: _lightgbm_scores(equal, terms.features, settings, seed),
        "logistic_all": lambda: _logistic_scores(splits, terms.all_features, settings, seed),
        "lightgbm_all": lambda: _lightgbm_scores(splits, terms.all_features, settings, seed),
        "age": lambda: _logistic_scores(equal, ["age"], settings, seed),
        "pce": lambda: _pce_scores(splits),
    }
    fitted = {}
    results = {}
    for name in which:
        source = name.removesuffix("_recalibrated")  # the same published scores, recalibrated differently
        if source not in fitted:
            fitted[source] = fitters[source]()
        (validation_prob, test_prob), tuned = fitted[source]
        trained_on = splits["train"] if name.endswith("_all") or name.startswith("pce") else sample_rows
        features = {"logistic": terms.features, "lightgbm": terms.features, "age": ["age"]}.get(name, terms.all_features)
        info = {"name": name, "fitted_on": "nothing (published equations)" if name.startswith("pce") else "train",
                "features": list(PCE_NUMERIC_INPUTS + PCE_LABEL_INPUTS) if name.startswith("pce") else list(features),
                "train_records": 0 if name.startswith("pce") else trained_on.height, "tuned": tuned}
        population = splits["train"]
        sample = TrainingSample(int(population["label"].sum()), population.height, float(trained_on["label"].mean()))
        results[name] = Scored(_score_frame(splits["validation"], validation_prob), _score_frame(splits["test"], test_prob), info, sample)
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


def _check_trainable(splits: dict[str, pl.DataFrame]) -> None:
    if splits["train"]["label"].n_unique() < 2:
        raise CadftError("the run's training records have only one class: a baseline cannot be fitted on them")


def _with_history_indicators(splits: dict[str, pl.DataFrame], feature_names: list[str]) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """The history list column (text.history=on) as one 0/1 column per item that at least HISTORY_MIN_RECORDS of the
    training records have: the baselines see the history the language model reads. Items come from train alone."""
    if HISTORY_COLUMN not in feature_names:
        return splits, feature_names
    counts = splits["train"][HISTORY_COLUMN].explode().drop_nulls().value_counts()
    items = sorted(counts.filter(pl.col("count") >= HISTORY_MIN_RECORDS)[HISTORY_COLUMN].to_list())
    indicators = [pl.col(HISTORY_COLUMN).list.contains(item).cast(pl.Int8).alias(f"{HISTORY_COLUMN}={item}") for item in items]
    names = [name for name in feature_names if name != HISTORY_COLUMN] + [f"{HISTORY_COLUMN}={item}" for item in items]
    return {split: rows.with_columns(indicators) for split, rows in splits.items()}, names


def _logistic_scores(splits: dict[str, pl.DataFrame], feature_names: list[str], settings, seed: int):
    _check_trainable(splits)
    splits, feature_names = _with_history_indicators(splits, feature_names)
    numeric, categorical = _feature_kinds(splits["train"], feature_names)
    frames = {name: _with_missing_category(rows.select(feature_names), categorical) for name, rows in splits.items()}
    y_train, y_val = splits["train"]["label"].to_numpy(), splits["validation"]["label"].to_numpy()
    best = None
    for c in settings.logistic_c:
        columns = ColumnTransformer([
            ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler()), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
        ])
        model = make_pipeline(columns, LogisticRegression(C=float(c), max_iter=5000, random_state=seed)).fit(frames["train"], y_train)
        loss = log_loss(y_val, model.predict_proba(frames["validation"])[:, 1], labels=[0, 1])
        if best is None or loss < best[0]:
            best = (loss, float(c), model)
    _, c, model = best
    probs = (model.predict_proba(frames["validation"])[:, 1], model.predict_proba(frames["test"])[:, 1])
    return probs, {"C": c, "validation_log_loss": best[0]}


def _lightgbm_scores(splits: dict[str, pl.DataFrame], feature_names: list[str], settings, seed: int):
    _check_trainable(splits)
    splits, feature_names = _with_history_indicators(splits, feature_names)
    numeric, categorical = _feature_kinds(splits["train"], feature_names)
    train = _with_missing_category(splits["train"], categorical)
    # Category codes come from train alone; a label first seen in validation/test becomes NaN (LightGBM: missing).
    codes = {c: {value: i for i, value in enumerate(sorted(train[c].unique().to_list()))} for c in categorical}

    def matrix(rows: pl.DataFrame) -> np.ndarray:
        rows = _with_missing_category(rows, categorical)
        encoded = [pl.col(c).replace_strict(codes[c], default=None, return_dtype=pl.Float64) for c in categorical]
        return rows.select(*[pl.col(c).cast(pl.Float64) for c in numeric], *encoded).to_numpy().astype(np.float64)

    x_train, x_val, x_test = matrix(train), matrix(splits["validation"]), matrix(splits["test"])
    y_train, y_val = train["label"].to_numpy(), splits["validation"]["label"].to_numpy()
    grid = settings.lightgbm
    best = None
    for leaves in grid.num_leaves:
        for rate in grid.learning_rate:
            model = lightgbm.LGBMClassifier(n_estimators=int(grid.max_trees), num_leaves=int(leaves), learning_rate=float(rate),
                                            min_child_samples=int(grid.min_child_samples), random_state=seed, **LIGHTGBM_FIXED)
            stopping = [lightgbm.early_stopping(int(grid.early_stopping_rounds), verbose=False)] if grid.early_stopping_rounds else []
            model.fit(x_train, y_train, eval_X=(x_val,), eval_y=(y_val,), eval_metric="binary_logloss",
                      categorical_feature=list(range(len(numeric), len(feature_names))), callbacks=stopping)
            loss = float(model.best_score_["valid_0"]["binary_logloss"]) if stopping else log_loss(y_val, model.predict_proba(x_val)[:, 1], labels=[0, 1])
            if best is None or loss < best[0]:
                best = (loss, {"num_leaves": int(leaves), "learning_rate": float(rate), "trees": int(model.best_iteration_ or grid.max_trees)}, model)
    loss, tuned, model = best
    return (model.predict_proba(x_val)[:, 1], model.predict_proba(x_test)[:, 1]), tuned | {"validation_log_loss": loss}


def _pce_scores(splits: dict[str, pl.DataFrame]):
    absent = [c for c in PCE_NUMERIC_INPUTS + PCE_LABEL_INPUTS if c not in splits["train"].columns]
    if absent:
        raise CadftError(f"the Pooled Cohort Equations need feature column(s) {', '.join(absent)}, which the prepared table "
                         f"lacks; add them to data.features or leave pce out of the baselines")
    medians = {c: splits["train"][c].cast(pl.Float64).median() for c in PCE_NUMERIC_INPUTS}
    unmeasured = [c for c, median in medians.items() if median is None]
    if unmeasured:
        raise CadftError(f"PCE input(s) {', '.join(unmeasured)} are missing for every train participant: no median to impute")
    return tuple(_pce_risk_of(splits[name], medians, name) for name in ("validation", "test")), {}


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


def run_baselines(table: pl.DataFrame, terms: Terms, cfg, out_dir: Path | None, *, seed: int, oracle_path=None,
                  which=CLASSICAL, context: dict | None = None, device: str | None = None) -> dict[str, tuple[dict, pl.DataFrame]]:
    """Fit every baseline in `which` (and score the oracle when given) and evaluate each; with out_dir, write
    out_dir/<name>/. Returns name -> (metrics, test frame whose prob is the baseline's reported risk). zero_shot runs
    the backbone on `device` (None: train.device)."""
    from cadft.eval.metrics import recalibrated
    from cadft.eval.report import write_report

    scores = fit_baselines(table, terms, cfg.baselines, seed=seed, which=[name for name in which if name in CLASSICAL])
    if "zero_shot" in which:
        from cadft.zero_shot import zero_shot_scores

        validation, test, info = zero_shot_scores(_splits(table), cfg, device, _score_frame)
        scores["zero_shot"] = Scored(validation, test, info)
    if oracle_path is not None:
        validation, test = oracle_scores(table, oracle_path)
        scores["oracle"] = Scored(validation, test, {"name": "oracle", "fitted_on": "nothing (the simulator's true risk)"})
    results = {}
    for name, scored in scores.items():
        eval_cfg = cfg.eval.copy()
        eval_cfg.recalibration = RECALIBRATION.get(name, cfg.eval.recalibration)
        if eval_cfg.recalibration == "prior_shift" and scored.sample is None:  # trained on no sample: nothing to undo
            eval_cfg.recalibration = "platt"
        metrics = evaluate_scores(scored.validation, scored.test, eval_cfg, seed=seed, model=name, sample=scored.sample)
        metrics["baseline"] = scored.info
        if name.startswith("pce"):
            metrics["baseline"]["imputed_participants"] = {
                split: pce_imputed_participants(table.filter(pl.col("split") == split)) for split in ("validation", "test")}
        results[name] = (metrics, scored.test.sort("eid").with_columns(pl.Series("prob", recalibrated(metrics, scored.test.sort("eid")["prob"].to_numpy()))))
    if out_dir is not None:
        for name, (metrics, _) in results.items():
            others = {other: frame for other, (_, frame) in results.items() if other != name}
            write_report(Path(out_dir) / name, scores[name].validation, scores[name].test, metrics, curves=others,
                         plots=bool(cfg.eval.plots), context=(context or {}) | {"title": f"cadft baseline: {name}"})
    return results
