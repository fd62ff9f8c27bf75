"""Does the language model add to a clinical model? The baselines `logistic+llm` and `pce+llm`.

Each combines a clinical model's linear predictor with the language model's logit in a logistic model fitted on
validation (as recalibration is) and scored once on test:

    logit P(case) = a + b * lp_clinical + c * logit(P_llm)

- logistic+llm: lp = the equal-terms logistic regression's linear predictor (fitted on the run's training records and
  text features, its C tuned on validation: the `logistic` baseline);
- pce+llm: lp = logit of the Pooled Cohort Equations' published risk (the `pce` baseline; nothing fitted on train).

Its reference is the same logistic model without the language model's term, fitted on the same validation records
(y ~ a + b * lp: Platt recalibration, i.e. the `logistic` row with eval.recalibration=platt, and `pce_recalibrated`),
so the two differ only by the language model. On the same test participants cadft reports the combination minus
the reference: ΔAUROC, NRI across eval.risk_thresholds, continuous NRI and IDI with paired bootstrap CIs
(cadft.eval.reclassification), as metrics.json's `incremental`. The combination's validation metrics are in-sample (3
coefficients fitted there), like any recalibrated model's. Under task.censoring=ipcw both logistic models are fitted,
and the differences computed, with the IPCW weights, as every other model is.

The language model's scores exist only where it is scored (cadft train, cadft eval: cadft.eval.run passes them to
cadft.eval.baselines.run); `cadft baselines` leaves these two out.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression

from cadft.config.schema import Eval
from cadft.data.ipcw import weights_of
from cadft.eval.baselines.common import Scored
from cadft.eval.recalibration import to_logit
from cadft.eval.reclassification import reclassification

COMBINATIONS = {"logistic+llm": "logistic", "pce+llm": "pce"}  # combination -> the clinical baseline it extends
REFERENCE_NAMES = {"logistic": "logistic (recalibrated: platt)", "pce": "pce_recalibrated"}


def combine(clinical: Scored, llm: tuple[pl.DataFrame, pl.DataFrame], name: str) -> tuple[Scored, Scored]:
    """(the combination, its reference without the language model), both fitted on validation. `clinical` holds the
    clinical model's raw probabilities, `llm` the language model's raw (validation, test) scores (eid, prob)."""
    columns = {}
    for split, frame, scores in (("validation", clinical.validation, llm[0]), ("test", clinical.test, llm[1])):
        joined = frame.sort("eid").join(scores.select("eid", pl.col("prob").alias("llm")), on="eid", how="left")
        if joined["llm"].null_count():
            raise ValueError(f"{name}: the language model scored other {split} participants")  # a programming error
        columns[split] = np.column_stack([to_logit(joined["prob"].to_numpy()), to_logit(joined["llm"].to_numpy())])
        columns[split + "_frame"] = joined.drop("llm")
    label = columns["validation_frame"]["label"].to_numpy()
    weight = weights_of(columns["validation_frame"])  # IPCW (task.censoring=ipcw), as recalibration is fitted
    # Unpenalized: the comparison is with the nested model fitted the same way, and validation is thousands of people.
    full = LogisticRegression(C=np.inf, max_iter=1000).fit(columns["validation"], label, sample_weight=weight)
    alone = LogisticRegression(C=np.inf, max_iter=1000).fit(columns["validation"][:, :1], label, sample_weight=weight)
    source = COMBINATIONS[name]

    def scored(model, width: int, info: dict) -> Scored:
        frames = [
            columns[f"{split}_frame"].with_columns(
                pl.Series("prob", model.predict_proba(columns[split][:, :width])[:, 1], pl.Float64)
            )
            for split in ("validation", "test")
        ]
        return Scored(frames[0], frames[1], info)

    coefficients = {
        "intercept": float(full.intercept_[0]),
        source: float(full.coef_[0, 0]),
        "llm": float(full.coef_[0, 1]),
    }
    info = {
        "name": name,
        "fitted_on": f"validation (a logistic model of the {source} baseline's linear predictor and the language "
        "model's logit)",
        "features": [f"{source} linear predictor", "language model logit"],
        "train_records": clinical.info.get("train_records", 0),
        "tuned": {"coefficients": coefficients, source: clinical.info.get("tuned", {})},
    }
    return scored(full, 2, info), scored(alone, 1, {"name": REFERENCE_NAMES[source]})


def incremental_value(
    name: str, combination: pl.DataFrame, reference: pl.DataFrame, settings: Eval, *, seed: int
) -> dict:
    """metrics.json's incremental block of one combination: the combination minus its reference on the same test
    participants (frames: eid, label, prob as risk)."""
    combination, reference = combination.sort("eid"), reference.sort("eid")
    if not combination["eid"].equals(reference["eid"]):
        raise ValueError("the combination and its reference score other participants")  # a programming error
    source = COMBINATIONS[name]
    return {"clinical": source, "reference": REFERENCE_NAMES[source]} | reclassification(
        combination["label"].to_numpy(),
        reference["prob"].to_numpy(),
        combination["prob"].to_numpy(),
        list(settings.risk_thresholds),
        resamples=settings.bootstrap,
        level=settings.ci_level,
        rng=np.random.default_rng(seed),
        weight=weights_of(combination),
    )
