"""The Cox proportional-hazards baselines (`cox`, `cox_all`): the model behind QRISK3, the Pooled Cohort Equations and
SCORE2, fitted with lifelines on the follow-up time and status of the prepared table (cadft.data.followup).

The features are logistic regression's (cadft.eval.baselines.classical: median-imputed, scaled numbers with missing
indicators, one-hot labels with the first category dropped, as a Cox model has no intercept; columns constant in
training dropped), fitted on the same training records (`cox`: the run's, `cox_all`: the whole training split)
including those censored before the horizon, whom a Cox model uses as they are (no IPCW weights). An event is the
outcome; a competing death ends follow-up, censored (the cause-specific hazard the published scores model). The
ridge penalty (`baselines.cox_penalizer`, lifelines' per-participant penalizer on standardised columns) is chosen by the
validation split's mean partial log-likelihood. The reported score is the 10-year risk 1 - S0(horizon)^exp(x b),
S0 the Breslow baseline survival of the training records; it is then recalibrated on validation like every baseline.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
from sklearn.feature_selection import VarianceThreshold
from sklearn.pipeline import make_pipeline

from cadft.config.schema import Baselines
from cadft.data.followup import EVENT, STATUS, TIME
from cadft.errors import CadftError
from cadft.eval.baselines.classical import (
    _feature_kinds,
    _with_history_indicators,
    _with_missing_category,
    linear_columns,
)

DURATION, EVENT_COLUMN = "duration", "event"  # the lifelines frame's time and event columns


def fit_cox(frame: pd.DataFrame, penalizer: float, alpha: float = 0.05):
    """A lifelines CoxPHFitter on `frame` (covariates, DURATION, EVENT_COLUMN); `alpha` sets its CIs' level."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifelines' advice on low-variance columns: the penalty handles them
            return CoxPHFitter(penalizer=penalizer, alpha=alpha).fit(frame, DURATION, EVENT_COLUMN)
    except ConvergenceError as err:
        raise CadftError(f"the Cox baseline did not converge with penalizer {penalizer}: {err}") from None


def lifelines_frame(covariates: np.ndarray, names: list[str], rows: pl.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(covariates, columns=names)
    frame[DURATION] = rows[TIME].to_numpy()
    frame[EVENT_COLUMN] = (rows[STATUS].to_numpy() == EVENT).astype(np.int8)
    return frame


def cox_scores(splits: dict[str, pl.DataFrame], feature_names: list[str], settings: Baselines, horizon: float):
    """((validation risk, test risk), tuned) of the Cox model on splits["train"]."""
    if TIME not in splits["train"].columns:
        raise CadftError("the Cox baseline needs follow-up time, which only incident outcomes have")
    if not (splits["train"][STATUS] == EVENT).any():
        raise CadftError("the Cox baseline's training records have no event")
    splits, feature_names = _with_history_indicators(splits, feature_names)
    numeric, categorical = _feature_kinds(splits["train"], feature_names)
    frames = {name: _with_missing_category(rows.select(feature_names), categorical) for name, rows in splits.items()}
    design = make_pipeline(linear_columns(numeric, categorical, drop_first=True), VarianceThreshold(0.0))
    design.fit(frames["train"])
    names = [f"x{i}" for i in range(len(design.get_feature_names_out()))]  # lifelines wants plain column names
    with warnings.catch_warnings():  # a label first seen outside train is the first (dropped) category: all zeros
        warnings.filterwarnings("ignore", "Found unknown categories", UserWarning)
        data = {
            name: lifelines_frame(_dense(design.transform(frame)), names, splits[name])
            for name, frame in frames.items()
        }
    best = None
    for penalizer in settings.cox_penalizer:
        model = fit_cox(data["train"], penalizer)
        score = float(model.score(data["validation"], scoring_method="log_likelihood"))
        if best is None or score > best[0]:
            best = (score, penalizer, model)
    score, penalizer, model = best
    risks = tuple(
        1.0 - model.predict_survival_function(data[name][names], times=[horizon]).to_numpy()[0]
        for name in ("validation", "test")
    )
    return risks, {"penalizer": penalizer, "validation_partial_log_likelihood": score}


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=np.float64)
