"""The baselines' own attributions, on the participants the language model is explained on, per part of the record.

- logistic: coefficient × centred value. Each of the pipeline's input columns (scaled number, missing indicator,
  one-hot label) contributes its coefficient times its value minus its mean over the training records; a feature's
  attribution is the sum over its columns. They add up to the model's log-odds minus its mean over the training
  records.
- lightgbm: TreeSHAP, LightGBM's own `pred_contrib` (its log-odds minus the expected log-odds, shared exactly among
  the inputs).

Both are the equal-terms baselines of the report, fitted as cadft.eval.baselines.classical fits them (the run's text
features and training records, tuned on validation). The history's 0/1 item columns (text.history=on) count toward
the history item of their source (history:diagnoses for a hospital diagnosis), the part of the record the language
model reads them in. Δrisk is the baseline's recalibrated risk minus the same without that attribution (recalibrated
on validation as the report recalibrates it).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.special import expit

from cadft.config.schema import Config
from cadft.data.history import HISTORY_COLUMN, SOURCES, name_column
from cadft.eval.baselines.classical import Fitted, fit_lightgbm, fit_logistic
from cadft.eval.baselines.common import splits_of
from cadft.eval.baselines.run import terms_for_run
from cadft.eval.recalibration import TrainingSample, fit, to_logit

VARIANT = {"logistic": "coefficient", "lightgbm": "treeshap"}


def baseline_attributions(
    table: pl.DataFrame, config: Config, train_rows: pl.DataFrame, eids: list[int], parts: list[str]
) -> pl.DataFrame:
    """model, variant, eid, feature, delta_logit, delta_risk of each baseline in explain.baselines, for the prepared
    table's participants `eids` (in that order) and the record's `parts`."""
    splits = splits_of(table)
    terms = terms_for_run(table, config, train_rows)
    equal = {**splits, "train": train_rows}
    rows = pl.DataFrame({"eid": eids}, schema={"eid": pl.Int64}).join(
        table, on="eid", how="left", maintain_order="left"
    )
    frames = []
    for name in config.explain.baselines:
        fitter = fit_logistic if name == "logistic" else fit_lightgbm
        fitted = fitter(equal, terms.features, config.baselines, config.seed)
        if name == "logistic":
            contributions = logistic_contributions(fitted, rows, train_rows)
        else:
            contributions = lightgbm_contributions(fitted, rows)
        by_part = _by_part(contributions, fitted.columns, parts)
        prob = fitted.probabilities(rows)
        recalibrator = fit(
            config.eval.recalibration,
            splits["validation"]["label"].to_numpy(),
            fitted.probabilities(splits["validation"]),
            sample=TrainingSample(
                int(splits["train"]["label"].sum()), splits["train"].height, float(train_rows["label"].mean())
            ),
        )
        risk = recalibrator.apply(prob)
        for part, delta in by_part.items():
            without = recalibrator.apply(expit(to_logit(prob) - delta))
            frames.append(
                pl.DataFrame(
                    {
                        "model": name,
                        "variant": VARIANT[name],
                        "eid": rows["eid"],
                        "feature": part,
                        "delta_logit": delta,
                        "delta_risk": risk - without,
                    }
                )
            )
    return pl.concat(frames) if frames else pl.DataFrame()


def logistic_contributions(fitted: Fitted, rows: pl.DataFrame, train_rows: pl.DataFrame) -> np.ndarray:
    """(participant, input column) coefficient × centred value of the logistic pipeline, summed per input column."""
    transformer, regression = fitted.model[0], fitted.model[-1]
    x, train = (_dense(transformer.transform(fitted.inputs(frame))) for frame in (rows, train_rows))
    per_output = (x - train.mean(axis=0)) * regression.coef_[0]
    owners = _output_owners(transformer, fitted)
    if len(owners) != per_output.shape[1]:
        raise RuntimeError(f"{len(owners)} owners for {per_output.shape[1]} logistic regression inputs")
    index = {column: i for i, column in enumerate(fitted.columns)}
    summed = np.zeros((x.shape[0], len(fitted.columns)))
    for j, owner in enumerate(owners):
        summed[:, index[owner]] += per_output[:, j]
    return summed


def lightgbm_contributions(fitted: Fitted, rows: pl.DataFrame) -> np.ndarray:
    """(participant, input column) TreeSHAP values; LightGBM's last column (the expected log-odds) is left out."""
    return np.asarray(fitted.model.predict(fitted.inputs(rows), pred_contrib=True))[:, :-1]


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=np.float64)


def _output_owners(transformer, fitted: Fitted) -> list[str]:
    """The input column each output of the ColumnTransformer comes from: numbers (then their missing indicators),
    then each label's one-hot columns."""
    numeric, categorical = fitted.numeric, fitted.columns[len(fitted.numeric) :]
    owners = []
    if numeric:
        imputer = transformer.named_transformers_["numeric"][0]
        indicated = [] if imputer.indicator_ is None else [numeric[i] for i in imputer.indicator_.features_]
        owners += list(numeric) + indicated
    if categorical:
        encoder = transformer.named_transformers_["categorical"]
        owners += [column for column, labels in zip(categorical, encoder.categories_) for _ in labels]
    return owners


def _by_part(contributions: np.ndarray, columns: list[str], parts: list[str]) -> dict[str, np.ndarray]:
    """part -> each participant's attribution: its own column, or the sum of its history items' columns."""
    source_of = {f"{HISTORY_COLUMN}={source.field}:": name_column(source) for source in SOURCES}
    summed = {part: np.zeros(contributions.shape[0]) for part in parts}
    for j, column in enumerate(columns):
        part = next((p for prefix, p in source_of.items() if column.startswith(prefix)), column)
        if part in summed:
            summed[part] += contributions[:, j]
    return summed
