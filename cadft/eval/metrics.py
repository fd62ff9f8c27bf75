"""Clinical metrics of one model's validation and test scores: the content of metrics.json. The one place metrics
are computed; `cadft.eval.summary` is the one place they are printed.

metrics.json, schema_version 2 (floats are plain numbers; an undefined metric, e.g. AUROC without cases, is null):
- `model`: the model's name; `recalibration`: {method, fitted_on, params} (cadft.eval.recalibration): the
  headline risk is the recalibrated probability, fitted on validation (prior_shift: on the known training sample).
- `threshold`: {method, value, chosen_on: "validation", target_sensitivity (method sensitivity only)}, chosen on
  the recalibrated validation risks; flagged when risk >= value.
- `bootstrap`: {resamples, level, seed, method: "percentile"} (participants drawn with replacement); `calibration_bins`,
  `risk_thresholds`, `min_subgroup_cases`, `notes` (list of strings: fallbacks taken).
- `validation`, `test`: split blocks on the recalibrated risk: n, cases, prevalence, auroc, auprc, brier, log_loss,
  mean_risk, oe_ratio (observed / expected = prevalence / mean_risk), calibration_in_the_large (a in
  y ~ a + offset(logit p)), calibration_intercept and calibration_slope (y ~ a + b logit p), ece (equal-count
  bins), `deciles` (equal-count bins of risk: n, cases, observed, observed_low/high (Wilson 95%), mean_risk,
  min_risk, max_risk), the threshold metrics accuracy, balanced_accuracy, precision, recall, sensitivity,
  specificity, f1, tp, fp, tn, fn; and `raw`: the same probability metrics (no threshold ones) of the score before
  recalibration.
- `test` also has `ci` ({auroc, auprc, brier, sensitivity, specificity, oe_ratio} -> {low, high}, the threshold
  held fixed), `decision` (one row per eval.risk_thresholds value: threshold, flagged, sensitivity, specificity,
  ppv, npv, net_benefit, net_benefit_treat_all, tp, fp, tn, fn), `decision_curve` (rows: threshold, treat_all,
  treat_none, model) and `subgroups` (group -> name -> {n, cases, prevalence, mean_risk, oe_ratio, auroc, brier,
  ci, note}; groups sex, age, ethnicity, townsend where the table has them; AUROC is null below
  eval.min_subgroup_cases cases).
- `comparison` (training runs; cadft.eval.comparison): baseline -> {auroc, brier, delta_auroc, delta_brier},
  each delta {value, low, high}: this model minus the baseline on the same test participants (paired bootstrap).
- `incremental` (training runs with baselines.which holding logistic+llm or pce+llm; cadft.eval.baselines.incremental,
  cadft.eval.reclassification): combination -> {clinical, reference, thresholds, delta_auroc, nri, nri_events,
  nri_nonevents, nri_continuous, nri_continuous_events, nri_continuous_nonevents, idi (each {value, low, high}: the
  combination minus the clinical model without the language model, paired bootstrap on the same test participants),
  reclassified: {events_up, events_down, nonevents_up, nonevents_down} (across the risk_thresholds categories)}.
- `validation` and `test` have `survival` for incident tasks: the censoring-aware block of cadft.eval.survival.
- task.censoring=ipcw (frames with ipcw_weight): every metric above, the recalibration and the threshold are
  IPCW-weighted (cadft.data.ipcw); `n`, `cases` stay counts, `prevalence` and tp/fp/tn/fn are weighted, and the
  blocks add `weighted: "ipcw"`, `participants_used` (weight > 0) and `effective_n` ((sum w)^2 / sum w^2).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict

import numpy as np
import polars as pl
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import binomtest, norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from cadft.config.schema import Eval
from cadft.data.followup import STATUS, TIME
from cadft.data.ipcw import weights_of
from cadft.errors import CadftError
from cadft.eval import recalibration
from cadft.eval.bootstrap import bootstrap_cis
from cadft.eval.decision import at_risk_thresholds, decision_curve, decision_curve_thresholds
from cadft.eval.recalibration import Recalibrator, TrainingSample, to_logit
from cadft.eval.subgroups import subgroup_masks
from cadft.eval.survival import TrainingCensoring, survival_metrics
from cadft.eval.weighted import split_counts, weighted_decile_table

SCHEMA_VERSION = 2


def evaluate_scores(
    validation: pl.DataFrame,
    test: pl.DataFrame,
    settings: Eval,
    *,
    seed: int,
    model: str = "model",
    recalibrator: Recalibrator | None = None,
    sample: TrainingSample | None = None,
    censoring: TrainingCensoring | None = None,
) -> dict:
    """metrics.json content. Frames hold eid, label, prob (the raw score) and subgroup columns, and may hold the
    follow-up (survival blocks, with `censoring`: the training split's) and IPCW weights. The recalibrator is fitted on
    validation unless one is given (a saved model's); the threshold is chosen on validation; test is only measured."""
    validation, test = validation.sort("eid"), test.sort("eid")  # row order must not change a single digit
    y_val, raw_val = frame_scores(validation, "validation")
    y_test, raw_test = frame_scores(test, "test")
    shared = set(validation["eid"].to_list()) & set(test["eid"].to_list())
    if shared:
        raise CadftError(f"{len(shared)} participant(s) are in both validation and test: the splits must be disjoint")
    if not 0 < y_test.sum() < len(y_test):
        raise CadftError(
            f"the test split has {int(y_test.sum())} cases among {len(y_test)} participants: discrimination "
            "needs cases and controls"
        )
    w_val, w_test = weights_of(validation), weights_of(test)  # None unless task.censoring=ipcw
    validation_usable = 0 < y_val.sum() < len(y_val)
    method, notes = _threshold_method(settings, y_val) if not validation_usable else (settings.threshold, [])
    if recalibrator is None:
        if not validation_usable and settings.recalibration in ("platt", "isotonic"):
            notes.append(
                f"eval.recalibration={settings.recalibration} was not fitted: validation lacks cases or "
                "controls; risks are the raw scores"
            )
            recalibrator = recalibration.fit("none", y_val, raw_val)
        else:
            recalibrator = recalibration.fit(settings.recalibration, y_val, raw_val, sample=sample, weight=w_val)
    p_val, p_test = recalibrator.apply(raw_val), recalibrator.apply(raw_test)
    threshold = choose_threshold(
        y_val,
        p_val,
        method,
        target_sensitivity=settings.target_sensitivity,
        fixed_threshold=settings.fixed_threshold,
        weight=w_val,
    )
    rng = np.random.default_rng(seed)
    bins = settings.calibration_bins
    test_block = split_metrics(y_test, p_test, threshold, bins, w_test) | {
        "raw": probability_metrics(y_test, raw_test, bins, w_test)
    }
    test_block["ci"] = with_oe_interval(
        bootstrap_cis(
            y_test, p_test, threshold, resamples=settings.bootstrap, level=settings.ci_level, rng=rng, weight=w_test
        ),
        test_block,
        settings.ci_level,
    )
    test_block["decision"] = at_risk_thresholds(y_test, p_test, settings.risk_thresholds, w_test)
    test_block["decision_curve"] = decision_curve(
        y_test, {model: p_test}, decision_curve_thresholds(settings.decision_curve), w_test
    )
    test_block["subgroups"] = {
        group: {
            name: subgroup_metrics(y_test[mask], p_test[mask], settings, rng, None if w_test is None else w_test[mask])
            for name, mask in masks.items()
        }
        for group, masks in subgroup_masks(test, settings.age_bands).items()
    }
    validation_block = split_metrics(y_val, p_val, threshold, bins, w_val) | {
        "raw": probability_metrics(y_val, raw_val, bins, w_val)
    }
    if censoring is not None:
        for block, frame, risk in ((validation_block, validation, p_val), (test_block, test, p_test)):
            block["survival"] = survival_metrics(frame[TIME], frame[STATUS], risk, censoring, bins)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "recalibration": asdict(recalibrator),
        "threshold": {"method": method, "value": threshold, "chosen_on": "validation"}
        | ({"target_sensitivity": settings.target_sensitivity} if method == "sensitivity" else {}),
        "bootstrap": {
            "resamples": settings.bootstrap,
            "level": settings.ci_level,
            "seed": int(seed),
            "method": "percentile",
        },
        "calibration_bins": bins,
        "risk_thresholds": list(settings.risk_thresholds),
        "min_subgroup_cases": settings.min_subgroup_cases,
        "notes": notes,
        "validation": validation_block,
        "test": test_block,
    }


def recalibrated(metrics: dict, prob) -> np.ndarray:
    """The headline risk of raw scores under the recalibration recorded in metrics.json."""
    return Recalibrator(**metrics["recalibration"]).apply(prob)


def _threshold_method(settings: Eval, y_val: np.ndarray) -> tuple[str, list[str]]:
    """The method to use when validation lacks cases (or controls), with a note; or the error that says why not."""
    if settings.threshold == "fixed":
        return "fixed", []
    problem = f"the validation split has {int(y_val.sum())} cases among {len(y_val)} participants"
    if settings.on_no_validation_cases == "error":
        raise CadftError(
            f"{problem}: a threshold cannot be chosen on it (eval.threshold={settings.threshold}); set "
            f"eval.on_no_validation_cases=fixed to use eval.fixed_threshold={settings.fixed_threshold} instead"
        )
    return "fixed", [f"{problem}: eval.fixed_threshold was used instead of eval.threshold={settings.threshold}"]


def frame_scores(frame: pl.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(label, prob) arrays of a scored split frame, checked."""
    missing = [c for c in ("eid", "label", "prob") if c not in frame.columns]
    if missing:
        raise CadftError(f"{name} scores lack column(s) {', '.join(missing)}; expected eid, label, prob")
    for column in ("eid", "label", "prob"):
        if frame[column].null_count():
            raise CadftError(
                f"{name} scores: {frame[column].null_count()} of {frame.height} rows have a missing {column}"
            )
    if frame["eid"].n_unique() != frame.height:
        raise CadftError(
            f"{name} scores: {frame.height - frame['eid'].n_unique()} duplicate eid(s); one row per "
            "participant expected"
        )
    return check_scores(frame["label"].to_numpy(), frame["prob"].to_numpy(), name)


def check_scores(label, prob, name: str) -> tuple[np.ndarray, np.ndarray]:
    """label as int 0/1 and prob as float in [0, 1], or a CadftError saying what is wrong and how often."""
    label, prob = np.asarray(label), np.asarray(prob, dtype=np.float64)
    if label.shape != prob.shape or label.ndim != 1:
        raise CadftError(
            f"{name}: {label.size} labels but {prob.size} probabilities; one of each per participant expected"
        )
    if label.size == 0:
        raise CadftError(f"{name}: no participants to evaluate")
    bad_labels = int(np.sum((label != 0) & (label != 1)))
    if bad_labels:
        raise CadftError(f"{name}: {bad_labels} label(s) are not 0 or 1")
    nan, outside = int(np.isnan(prob).sum()), int(np.sum((prob < 0) | (prob > 1)))
    if nan or outside:
        raise CadftError(
            f"{name}: {nan} NaN and {outside} out-of-range probabilities among {prob.size}; probabilities "
            "must lie in [0, 1]"
        )
    return label.astype(np.int64), prob


def choose_threshold(
    label: np.ndarray,
    prob: np.ndarray,
    method: str,
    *,
    target_sensitivity: float,
    fixed_threshold: float,
    weight: np.ndarray | None = None,
) -> float:
    """A probability cut-off (positive when prob >= it); among equally good cut-offs the highest (most specific)."""
    if method == "fixed":
        return float(fixed_threshold)
    if method == "max_f1":
        precision, recall, thresholds = precision_recall_curve(label, prob, sample_weight=weight)
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
        f1 = f1[:-1]  # the last point has no threshold
        return float(thresholds[np.flatnonzero(f1 == f1.max())[-1]])
    fpr, tpr, thresholds = roc_curve(label, prob, drop_intermediate=False, sample_weight=weight)  # decreasing, +inf 1st
    if method == "youden":
        return float(thresholds[1 + np.argmax((tpr - fpr)[1:])])
    if method == "sensitivity":
        return float(
            thresholds[np.flatnonzero(tpr >= target_sensitivity)[0]]
        )  # the highest cut-off reaching the target
    raise CadftError(f"eval.threshold={method}; allowed: youden, max_f1, sensitivity, fixed")


def probability_metrics(label: np.ndarray, prob: np.ndarray, bins: int, weight: np.ndarray | None = None) -> dict:
    """Discrimination and calibration of probabilities, without a threshold."""
    counts = split_counts(label, prob, weight)
    n, cases, mean_risk = counts["n"], counts["cases"], counts["mean_risk"]
    both_classes = 0 < cases < n
    deciles = decile_table(label, prob, bins, weight)
    total = n if weight is None else float(weight.sum())
    return {
        **counts,
        "auroc": float(roc_auc_score(label, prob, sample_weight=weight)) if both_classes else None,
        "auprc": float(average_precision_score(label, prob, sample_weight=weight)) if both_classes else None,
        "brier": float(brier_score_loss(label, prob, pos_label=1, sample_weight=weight)),
        "log_loss": float(log_loss(label, prob, labels=[0, 1], sample_weight=weight)),
        "oe_ratio": counts["prevalence"] / mean_risk if mean_risk > 0 else None,
        **calibration_fit(label, prob, weight),
        "ece": float(
            sum(row.get("weight", row["n"]) / total * abs(row["observed"] - row["mean_risk"]) for row in deciles)
        ),
        "deciles": deciles,
    }


def split_metrics(
    label: np.ndarray, prob: np.ndarray, threshold: float, bins: int, weight: np.ndarray | None = None
) -> dict:
    return probability_metrics(label, prob, bins, weight) | threshold_metrics(label, prob, threshold, weight)


def subgroup_metrics(
    label: np.ndarray, prob: np.ndarray, settings: Eval, rng: np.random.Generator, weight: np.ndarray | None = None
) -> dict:
    counts = split_counts(label, prob, weight)
    n, cases, mean_risk = counts["n"], counts["cases"], counts["mean_risk"]
    block = {
        **counts,
        "oe_ratio": counts["prevalence"] / mean_risk if mean_risk > 0 else None,
        "brier": float(brier_score_loss(label, prob, pos_label=1, sample_weight=weight)),
        "auroc": None,
        "ci": None,
        "note": None,
    }
    if cases < settings.min_subgroup_cases or cases == n:
        return block | {
            "note": f"too few cases ({cases} < {settings.min_subgroup_cases}) for AUROC"
            if cases < settings.min_subgroup_cases
            else "no controls"
        }
    ci = with_oe_interval(
        bootstrap_cis(label, prob, 0.5, resamples=settings.bootstrap, level=settings.ci_level, rng=rng, weight=weight),
        block,
        settings.ci_level,
    )
    return block | {
        "auroc": float(roc_auc_score(label, prob, sample_weight=weight)),
        "ci": {k: ci[k] for k in ("auroc", "brier", "oe_ratio")} if ci else None,
    }


def oe_ratio_interval(cases: int, n: int, mean_risk: float, level: float) -> dict | None:
    """{low, high} of observed / expected: exp(log(O/E) +- z sqrt((1 - O/N) / O)), the expected count held fixed
    (Riley et al., BMJ 2021;372:n351, as for the sample size of a validation study): the binomial variation of the
    observed cases, most of O/E's uncertainty. On simulated calibrated test sets of demo size it held 1 in 95% (the
    percentile bootstrap: 92%). None without cases or expected risk."""
    if cases == 0 or mean_risk <= 0:
        return None
    half_width = norm.ppf(0.5 + level / 2) * math.sqrt((1 - cases / n) / cases)
    log_ratio = math.log(cases / n / mean_risk)
    return {"low": math.exp(log_ratio - half_width), "high": math.exp(log_ratio + half_width)}


def with_oe_interval(ci: dict | None, block: dict, level: float) -> dict | None:
    """The bootstrap CIs with O/E's analytic interval; weighted (IPCW) blocks count their effective size."""
    if ci is None:
        return None
    if "effective_n" in block:
        n = block["effective_n"]
        return ci | {"oe_ratio": oe_ratio_interval(block["prevalence"] * n, n, block["mean_risk"], level)}
    return ci | {"oe_ratio": oe_ratio_interval(block["cases"], block["n"], block["mean_risk"], level)}


def decile_table(label: np.ndarray, prob: np.ndarray, bins: int, weight: np.ndarray | None = None) -> list[dict]:
    """Equal-count bins of predicted risk (ordered by risk; sizes differ by at most one): observed rate with its
    Wilson 95% interval beside the mean predicted risk. IPCW-weighted: the bins of the participants used (weight > 0),
    their weighted rates, the interval on the bin's effective size, and each bin's total `weight`."""
    if weight is not None:
        return weighted_decile_table(label, prob, bins, weight)
    order = np.argsort(prob, kind="stable")
    rows = []
    for index in np.array_split(order, min(bins, len(order))):
        cases, n = int(label[index].sum()), len(index)
        interval = binomtest(cases, n).proportion_ci(confidence_level=0.95, method="wilson")
        rows.append(
            {
                "n": n,
                "cases": cases,
                "observed": cases / n,
                "observed_low": float(interval.low),
                "observed_high": float(interval.high),
                "mean_risk": float(prob[index].mean()),
                "min_risk": float(prob[index].min()),
                "max_risk": float(prob[index].max()),
            }
        )
    return rows


def threshold_metrics(label: np.ndarray, prob: np.ndarray, threshold: float, weight: np.ndarray | None = None) -> dict:
    cells = confusion_matrix(label, (prob >= threshold).astype(np.int64), labels=[0, 1], sample_weight=weight).ravel()
    tn, fp, fn, tp = (int(c) if weight is None else float(c) for c in cells)
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "balanced_accuracy": None if sensitivity is None or specificity is None else (sensitivity + specificity) / 2,
        "precision": _ratio(tp, tp + fp),
        "recall": sensitivity,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def calibration_fit(label: np.ndarray, prob: np.ndarray, weight: np.ndarray | None = None) -> dict:
    """Cox's logistic recalibration y ~ a + b logit(p) (ideal a=0, b=1), and calibration-in-the-large."""
    undefined = {"calibration_intercept": None, "calibration_slope": None, "calibration_in_the_large": None}
    if weight is not None:  # the participants used, weighted
        used = weight > 0
        label, prob, weight = label[used], prob[used], weight[used]
    if not 0 < label.sum() < len(label):
        return undefined
    z = to_logit(prob)
    # The mean predicted risk equals the observed rate at the root: monotone in a, so brentq always finds it.
    rate = np.average(label, weights=weight)  # without weights: the plain means, exactly
    in_the_large = brentq(lambda a: np.average(expit(a + z), weights=weight) - rate, -100.0, 100.0, xtol=1e-12)
    cases, controls = z[label == 1], z[label == 0]
    if cases.min() >= controls.max() or controls.min() >= cases.max():  # separated: the slope's MLE is infinite
        return undefined | {"calibration_in_the_large": float(in_the_large)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            model = LogisticRegression(C=math.inf, solver="newton-cholesky", tol=1e-12, max_iter=100).fit(
                z.reshape(-1, 1), label, sample_weight=weight
            )
    except ConvergenceWarning:
        return undefined | {"calibration_in_the_large": float(in_the_large)}
    return {
        "calibration_intercept": float(model.intercept_[0]),
        "calibration_slope": float(model.coef_[0, 0]),
        "calibration_in_the_large": float(in_the_large),
    }
