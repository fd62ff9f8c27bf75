"""Logistic regression and LightGBM on the prepared table's feature columns, fitted on train and tuned on validation.

Logistic regression: median-imputed, scaled numbers (plus missing indicators) and one-hot labels (missing is its
own category); C chosen from `baselines.logistic_c` by validation log loss. LightGBM: native categorical splits,
num_leaves x learning_rate grid chosen by validation log loss, trees by early stopping on validation. With
text.history=on both also get the history as 0/1 columns, one per item at least HISTORY_MIN_RECORDS training
records have. Under task.censoring=ipcw both are fitted and tuned with the IPCW weights (cadft.data.ipcw), as the
language model's loss is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm
import numpy as np
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cadft.config.schema import Baselines
from cadft.data.history import HISTORY_COLUMN
from cadft.data.ipcw import weights_of
from cadft.errors import CadftError

MISSING_CATEGORY = "Missing"
HISTORY_MIN_RECORDS = 10  # a history item becomes an indicator column when this many training records have it
# One thread: OpenMP workers spin-wait, and on a busy machine a two-thread fit once took minutes instead of 0.1 s.
LIGHTGBM_FIXED = {"reg_lambda": 1.0, "n_jobs": 1, "deterministic": True, "force_row_wise": True, "verbose": -1}


def _feature_kinds(table: pl.DataFrame, feature_names: list[str]) -> tuple[list[str], list[str]]:
    numeric = [name for name in feature_names if table[name].dtype.is_numeric()]
    return numeric, [name for name in feature_names if name not in numeric]


def _with_missing_category(rows: pl.DataFrame, categorical: list[str]) -> pl.DataFrame:
    return rows.with_columns(pl.col(c).cast(pl.String).fill_null(MISSING_CATEGORY) for c in categorical)


def _check_trainable(splits: dict[str, pl.DataFrame]) -> None:
    if splits["train"]["label"].n_unique() < 2:
        raise CadftError("the run's training records have only one class: a baseline cannot be fitted on them")


def _with_history_indicators(
    splits: dict[str, pl.DataFrame], feature_names: list[str]
) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """The history list column (text.history=on) as one 0/1 column per item that at least HISTORY_MIN_RECORDS of the
    training records have: the baselines see the history the language model reads. Items come from train alone."""
    items = _history_items(splits["train"], feature_names)
    if items is None:
        return splits, feature_names
    names = [name for name in feature_names if name != HISTORY_COLUMN] + [f"{HISTORY_COLUMN}={item}" for item in items]
    return {split: _add_indicators(rows, items) for split, rows in splits.items()}, names


def _history_items(train: pl.DataFrame, feature_names: list[str]) -> list[str] | None:
    if HISTORY_COLUMN not in feature_names:
        return None
    counts = train[HISTORY_COLUMN].explode().drop_nulls().value_counts()
    return sorted(counts.filter(pl.col("count") >= HISTORY_MIN_RECORDS)[HISTORY_COLUMN].to_list())


def _add_indicators(rows: pl.DataFrame, items: list[str] | None) -> pl.DataFrame:
    if items is None:
        return rows
    return rows.with_columns(
        pl.col(HISTORY_COLUMN).list.contains(item).cast(pl.Int8).alias(f"{HISTORY_COLUMN}={item}") for item in items
    )


@dataclass(frozen=True)
class Fitted:
    """A fitted baseline: `model` takes `inputs(rows)` of any prepared rows; `columns` are its input columns (history
    items expanded), numeric ones first; `tuned` what validation chose."""

    model: Any  # the scikit-learn pipeline (logistic) or the LGBMClassifier
    inputs: Callable[[pl.DataFrame], Any]
    columns: list[str]
    numeric: list[str]
    tuned: dict

    def probabilities(self, rows: pl.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self.inputs(rows))[:, 1]


def linear_columns(numeric: list[str], categorical: list[str], *, drop_first: bool = False) -> ColumnTransformer:
    """Median-imputed, scaled numbers with missing indicators, and one-hot labels (the first dropped for a model
    without an intercept, the Cox model)."""
    return ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler()
                ),
                numeric,
            ),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", drop="first" if drop_first else None),
                categorical,
            ),
        ]
    )


def logistic_scores(splits: dict[str, pl.DataFrame], feature_names: list[str], settings: Baselines, seed: int):
    return _validation_and_test(fit_logistic(splits, feature_names, settings, seed), splits)


def lightgbm_scores(splits: dict[str, pl.DataFrame], feature_names: list[str], settings: Baselines, seed: int):
    return _validation_and_test(fit_lightgbm(splits, feature_names, settings, seed), splits)


def _validation_and_test(fitted: Fitted, splits: dict[str, pl.DataFrame]):
    return tuple(fitted.probabilities(splits[name]) for name in ("validation", "test")), fitted.tuned


def _design(splits: dict[str, pl.DataFrame], feature_names: list[str]):
    """What both fits start from: history items, the splits with their indicator columns, the input columns and which
    of them are numeric and categorical."""
    _check_trainable(splits)
    items = _history_items(splits["train"], feature_names)
    expanded, feature_names = _with_history_indicators(splits, feature_names)
    numeric, categorical = _feature_kinds(expanded["train"], feature_names)
    return items, expanded, feature_names, numeric, categorical


def fit_logistic(splits: dict[str, pl.DataFrame], feature_names: list[str], settings: Baselines, seed: int) -> Fitted:
    items, _, feature_names, numeric, categorical = _design(splits, feature_names)

    def inputs(rows: pl.DataFrame) -> pl.DataFrame:
        return _with_missing_category(_add_indicators(rows, items).select(feature_names), categorical)

    frames = {name: inputs(rows) for name, rows in splits.items()}
    y_train, y_val = splits["train"]["label"].to_numpy(), splits["validation"]["label"].to_numpy()
    w_train, w_val = weights_of(splits["train"]), weights_of(splits["validation"])
    best = None
    for c in settings.logistic_c:
        model = make_pipeline(
            linear_columns(numeric, categorical), LogisticRegression(C=c, max_iter=5000, random_state=seed)
        ).fit(frames["train"], y_train, logisticregression__sample_weight=w_train)
        loss = log_loss(y_val, model.predict_proba(frames["validation"])[:, 1], labels=[0, 1], sample_weight=w_val)
        if best is None or loss < best[0]:
            best = (loss, c, model)
    loss, c, model = best
    return Fitted(model, inputs, numeric + categorical, numeric, {"C": c, "validation_log_loss": loss})


def fit_lightgbm(splits: dict[str, pl.DataFrame], feature_names: list[str], settings: Baselines, seed: int) -> Fitted:
    items, expanded, feature_names, numeric, categorical = _design(splits, feature_names)
    train = _with_missing_category(expanded["train"], categorical)
    # Category codes come from train alone; a label first seen in validation/test becomes NaN (LightGBM: missing).
    codes = {c: {value: i for i, value in enumerate(sorted(train[c].unique().to_list()))} for c in categorical}

    def matrix(rows: pl.DataFrame) -> np.ndarray:
        rows = _with_missing_category(_add_indicators(rows, items), categorical)
        encoded = [pl.col(c).replace_strict(codes[c], default=None, return_dtype=pl.Float64) for c in categorical]
        return rows.select(*[pl.col(c).cast(pl.Float64) for c in numeric], *encoded).to_numpy().astype(np.float64)

    x_train, x_val = matrix(splits["train"]), matrix(splits["validation"])
    y_train, y_val = train["label"].to_numpy(), splits["validation"]["label"].to_numpy()
    w_train, w_val = weights_of(train), weights_of(splits["validation"])
    grid = settings.lightgbm
    best = None
    for leaves in grid.num_leaves:
        for rate in grid.learning_rate:
            model = lightgbm.LGBMClassifier(
                n_estimators=grid.max_trees,
                num_leaves=leaves,
                learning_rate=rate,
                min_child_samples=grid.min_child_samples,
                random_state=seed,
                **LIGHTGBM_FIXED,
            )
            stopping = (
                [lightgbm.early_stopping(grid.early_stopping_rounds, verbose=False)]
                if grid.early_stopping_rounds
                else []
            )
            model.fit(
                x_train,
                y_train,
                sample_weight=w_train,
                eval_X=(x_val,),
                eval_y=(y_val,),
                eval_sample_weight=None if w_val is None else [w_val],
                eval_metric="binary_logloss",
                categorical_feature=list(range(len(numeric), len(feature_names))),
                callbacks=stopping,
            )
            loss = (
                float(model.best_score_["valid_0"]["binary_logloss"])
                if stopping
                else log_loss(y_val, model.predict_proba(x_val)[:, 1], labels=[0, 1], sample_weight=w_val)
            )
            if best is None or loss < best[0]:
                best = (
                    loss,
                    {
                        "num_leaves": leaves,
                        "learning_rate": rate,
                        "trees": int(model.best_iteration_ or grid.max_trees),
                    },
                    model,
                )
    loss, tuned, model = best
    return Fitted(model, matrix, numeric + categorical, numeric, tuned | {"validation_log_loss": loss})
