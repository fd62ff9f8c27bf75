"""Clinical metrics of one model's validation and test probabilities: the content of metrics.json.

metrics.json, schema_version 1 (floats are plain numbers; a metric that is undefined, e.g. AUROC of a
subgroup without cases, is null):
- `threshold`: {method, value, chosen_on: "validation", target_sensitivity (method sensitivity only)}.
  Predictions are positive when prob >= value.
- `temperature_scaling`: null, or {temperature, fitted_on: "validation", threshold}: calibrated
  prob = sigmoid(logit(prob) / temperature); `threshold` is chosen the same way on calibrated validation probs.
- `bootstrap`: {resamples, level, seed, stratified_by: "label", method: "percentile"}.
- `calibration_bins`, `notes` (list of strings: fallbacks taken).
- `validation`, `test`: split blocks. A split block has n, cases, prevalence, auroc, auprc, brier, log_loss,
  ece, calibration_intercept and calibration_slope (y ~ a + b logit(p), Cox), calibration_in_the_large
  (a in y ~ a + offset(logit(p))), threshold-dependent accuracy, balanced_accuracy, precision, recall,
  sensitivity (= recall), specificity, f1, tp, fp, tn, fn, and `reliability` (one entry per equal-width bin
  [lower, upper), the last closed: lower, upper, n, mean_prob, observed_rate).
  `test` also has `ci` ({auroc, auprc, brier, sensitivity, specificity} -> {low, high}, the threshold held
  fixed), `subgroups` ({"sex": {"Female": block + ci, ...}, "age": {"under_40", "40-50", ..., "70_plus"}};
  age bands are half-open [low, high)), and `calibrated` (a split block, without ci) under temperature scaling.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.optimize import brentq, minimize_scalar
from scipy.special import expit, logit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, confusion_matrix, log_loss, precision_recall_curve, roc_auc_score, roc_curve

from cadft.errors import CadftError

SCHEMA_VERSION = 1
THRESHOLD_METHODS = ("youden", "max_f1", "sensitivity", "fixed")
NO_VALIDATION_CASES_POLICIES = ("error", "fixed")
CI_METRICS = ("auroc", "auprc", "brier", "sensitivity", "specificity")
PROB_CLIP = 1e-12  # logit(0) and logit(1) are infinite: probabilities are clipped to [PROB_CLIP, 1 - PROB_CLIP] first
BOOTSTRAP_CELLS = 2_000_000  # resample x participant cells per chunk: bounds memory on UKB-sized splits


@dataclass(frozen=True)
class EvalSettings:
    threshold: str
    target_sensitivity: float
    fixed_threshold: float
    on_no_validation_cases: str
    bootstrap: int
    ci_level: float
    temperature_scaling: bool
    calibration_bins: int
    age_bands: tuple[float, ...]

    @classmethod
    def from_config(cls, cfg) -> EvalSettings:
        missing = [key for key in cls.__dataclass_fields__ if cfg.get(key) is None]
        if missing:
            raise CadftError(f"eval config lacks {', '.join(missing)} (see conf/eval/default.yaml)")
        settings = cls(str(cfg.get("threshold")), float(cfg.get("target_sensitivity")), float(cfg.get("fixed_threshold")),
                       str(cfg.get("on_no_validation_cases")), int(cfg.get("bootstrap")), float(cfg.get("ci_level")),
                       bool(cfg.get("temperature_scaling")), int(cfg.get("calibration_bins")),
                       tuple(float(edge) for edge in cfg.get("age_bands")))
        requirements = {
            f"eval.threshold={settings.threshold!r}; allowed: {', '.join(THRESHOLD_METHODS)}": settings.threshold in THRESHOLD_METHODS,
            f"eval.on_no_validation_cases={settings.on_no_validation_cases!r}; allowed: {', '.join(NO_VALIDATION_CASES_POLICIES)}":
                settings.on_no_validation_cases in NO_VALIDATION_CASES_POLICIES,
            "eval.target_sensitivity must be in (0, 1]": 0 < settings.target_sensitivity <= 1,
            "eval.fixed_threshold must be in [0, 1]": 0 <= settings.fixed_threshold <= 1,
            "eval.bootstrap must be >= 0 (0: no confidence intervals)": settings.bootstrap >= 0,
            "eval.ci_level must be in (0, 1)": 0 < settings.ci_level < 1,
            "eval.calibration_bins must be >= 1": settings.calibration_bins >= 1,
            "eval.age_bands must be strictly increasing": bool(np.all(np.diff(settings.age_bands) > 0)),
        }
        problems = [message for message, met in requirements.items() if not met]
        if problems:
            raise CadftError("; ".join(problems))
        return settings


def evaluate_scores(validation: pl.DataFrame, test: pl.DataFrame, eval_cfg, *, seed: int) -> dict:
    """metrics.json content: the threshold is chosen on validation, everything headline is measured on test."""
    settings = EvalSettings.from_config(eval_cfg)
    validation, test = validation.sort("eid"), test.sort("eid")  # row order must not change a single digit
    y_val, p_val = frame_scores(validation, "validation")
    y_test, p_test = frame_scores(test, "test")
    shared = set(validation["eid"].to_list()) & set(test["eid"].to_list())
    if shared:
        raise CadftError(f"{len(shared)} participant(s) are in both validation and test (e.g. eid {min(shared)}): the splits must be disjoint")
    if not 0 < y_test.sum() < len(y_test):
        raise CadftError(f"the test split has {int(y_test.sum())} cases among {len(y_test)} participants: discrimination needs cases and controls")
    validation_usable = 0 < y_val.sum() < len(y_val)
    method, notes = _threshold_method(settings, y_val) if not validation_usable else (settings.threshold, [])
    threshold = choose_threshold(y_val, p_val, method, target_sensitivity=settings.target_sensitivity, fixed_threshold=settings.fixed_threshold)
    rng = np.random.default_rng(seed)
    bins = settings.calibration_bins
    test_block = split_metrics(y_test, p_test, threshold, bins)
    test_block["ci"] = bootstrap_cis(y_test, p_test, threshold, resamples=settings.bootstrap, level=settings.ci_level, rng=rng)
    test_block["subgroups"] = {
        group: {name: {**split_metrics(y_test[mask], p_test[mask], threshold, bins),
                       "ci": bootstrap_cis(y_test[mask], p_test[mask], threshold, resamples=settings.bootstrap, level=settings.ci_level, rng=rng)}
                for name, mask in masks.items()}
        for group, masks in subgroup_masks(test, settings.age_bands).items()
    }
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "threshold": {"method": method, "value": threshold, "chosen_on": "validation"}
        | ({"target_sensitivity": settings.target_sensitivity} if method == "sensitivity" else {}),
        "temperature_scaling": None,
        "bootstrap": {"resamples": settings.bootstrap, "level": settings.ci_level, "seed": int(seed), "stratified_by": "label", "method": "percentile"},
        "calibration_bins": bins,
        "notes": notes,
        "validation": split_metrics(y_val, p_val, threshold, bins),
        "test": test_block,
    }
    if settings.temperature_scaling and not validation_usable:
        notes.append("temperature scaling was skipped: it needs cases and controls in validation")
    elif settings.temperature_scaling:
        temperature = fit_temperature(y_val, p_val)
        calibrated_threshold = choose_threshold(y_val, apply_temperature(p_val, temperature), method,
                                                target_sensitivity=settings.target_sensitivity, fixed_threshold=settings.fixed_threshold)
        metrics["temperature_scaling"] = {"temperature": temperature, "fitted_on": "validation", "threshold": calibrated_threshold}
        test_block["calibrated"] = split_metrics(y_test, apply_temperature(p_test, temperature), calibrated_threshold, bins)
    return metrics


def _threshold_method(settings: EvalSettings, y_val: np.ndarray) -> tuple[str, list[str]]:
    """The method to use when validation lacks cases (or controls), with a note; or the error that says why not."""
    if settings.threshold == "fixed":
        return "fixed", []
    problem = f"the validation split has {int(y_val.sum())} cases among {len(y_val)} participants"
    if settings.on_no_validation_cases == "error":
        raise CadftError(f"{problem}: a threshold cannot be chosen on it (eval.threshold={settings.threshold}); set "
                         f"eval.on_no_validation_cases=fixed to use eval.fixed_threshold={settings.fixed_threshold} instead")
    return "fixed", [f"{problem}: eval.fixed_threshold was used instead of eval.threshold={settings.threshold}"]


def frame_scores(frame: pl.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(label, prob) arrays of a scored split frame, checked."""
    missing = [c for c in ("eid", "label", "prob") if c not in frame.columns]
    if missing:
        raise CadftError(f"{name} scores lack column(s) {', '.join(missing)}; expected eid, label, prob")
    for column in ("eid", "label", "prob"):
        if frame[column].null_count():
            raise CadftError(f"{name} scores: {frame[column].null_count()} of {frame.height} rows have a missing {column}")
    if frame["eid"].n_unique() != frame.height:
        raise CadftError(f"{name} scores: {frame.height - frame['eid'].n_unique()} duplicate eid(s); one row per participant expected")
    return check_scores(frame["label"].to_numpy(), frame["prob"].to_numpy(), name)


def check_scores(label, prob, name: str) -> tuple[np.ndarray, np.ndarray]:
    """label as int 0/1 and prob as float in [0, 1], or a CadftError saying what is wrong and how often."""
    label, prob = np.asarray(label), np.asarray(prob, dtype=np.float64)
    if label.shape != prob.shape or label.ndim != 1:
        raise CadftError(f"{name}: {label.size} labels but {prob.size} probabilities; one of each per participant expected")
    if label.size == 0:
        raise CadftError(f"{name}: no participants to evaluate")
    bad_labels = int(np.sum((label != 0) & (label != 1)))
    if bad_labels:
        raise CadftError(f"{name}: {bad_labels} label(s) are not 0 or 1")
    nan, outside = int(np.isnan(prob).sum()), int(np.sum((prob < 0) | (prob > 1)))
    if nan or outside:
        raise CadftError(f"{name}: {nan} NaN and {outside} out-of-range probabilities among {prob.size}; probabilities must lie in [0, 1]")
    return label.astype(np.int64), prob


def choose_threshold(label: np.ndarray, prob: np.ndarray, method: str, *, target_sensitivity: float, fixed_threshold: float) -> float:
    """A probability cut-off (positive when prob >= it); among equally good cut-offs the highest (most specific)."""
    if method == "fixed":
        return float(fixed_threshold)
    if method == "max_f1":
        precision, recall, thresholds = precision_recall_curve(label, prob)
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)[:-1]  # last point has no threshold
        return float(thresholds[np.flatnonzero(f1 == f1.max())[-1]])
    fpr, tpr, thresholds = roc_curve(label, prob, drop_intermediate=False)  # thresholds decreasing; the first is +inf
    if method == "youden":
        return float(thresholds[1 + np.argmax((tpr - fpr)[1:])])
    return float(thresholds[np.flatnonzero(tpr >= target_sensitivity)[0]])  # the highest cut-off reaching the target


def split_metrics(label: np.ndarray, prob: np.ndarray, threshold: float, bins: int) -> dict:
    n, cases = len(label), int(label.sum())
    both_classes = 0 < cases < n
    reliability = reliability_table(label, prob, bins)
    return {
        "n": n,
        "cases": cases,
        "prevalence": cases / n,
        "auroc": float(roc_auc_score(label, prob)) if both_classes else None,
        "auprc": float(average_precision_score(label, prob)) if both_classes else None,
        "brier": float(brier_score_loss(label, prob, pos_label=1)),
        "log_loss": float(log_loss(label, prob, labels=[0, 1])),
        **calibration_fit(label, prob),
        **threshold_metrics(label, prob, threshold),
        "ece": expected_calibration_error(reliability, n),
        "reliability": reliability,
    }


def threshold_metrics(label: np.ndarray, prob: np.ndarray, threshold: float) -> dict:
    tn, fp, fn, tp = (int(c) for c in confusion_matrix(label, (prob >= threshold).astype(np.int64), labels=[0, 1]).ravel())
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
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


def reliability_table(label: np.ndarray, prob: np.ndarray, bins: int) -> list[dict]:
    """Equal-width bins [k/bins, (k+1)/bins), the last one closed at 1: n, mean probability and observed rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.digitize(prob, edges[1:-1])
    table = []
    for k in range(bins):
        inside = index == k
        count = int(inside.sum())
        table.append({"lower": float(edges[k]), "upper": float(edges[k + 1]), "n": count,
                      "mean_prob": float(prob[inside].mean()) if count else None,
                      "observed_rate": float(label[inside].mean()) if count else None})
    return table


def expected_calibration_error(reliability: list[dict], n: int) -> float:
    """sum over bins of (bin share) x |observed rate - mean probability|, from reliability_table."""
    return float(sum(row["n"] / n * abs(row["observed_rate"] - row["mean_prob"]) for row in reliability if row["n"]))


def to_logit(prob: np.ndarray) -> np.ndarray:
    return logit(np.clip(prob, PROB_CLIP, 1 - PROB_CLIP))


def calibration_fit(label: np.ndarray, prob: np.ndarray) -> dict:
    """Cox's logistic recalibration y ~ a + b logit(p) (ideal a=0, b=1), and calibration-in-the-large."""
    undefined = {"calibration_intercept": None, "calibration_slope": None, "calibration_in_the_large": None}
    if not 0 < label.sum() < len(label):
        return undefined
    z = to_logit(prob)
    # The mean predicted risk equals the observed rate at the root: monotone in a, so brentq always finds it.
    in_the_large = brentq(lambda a: expit(a + z).mean() - label.mean(), -100.0, 100.0, xtol=1e-12)
    cases, controls = z[label == 1], z[label == 0]
    if cases.min() >= controls.max() or controls.min() >= cases.max():  # separated: the slope's MLE is infinite
        return undefined | {"calibration_in_the_large": float(in_the_large)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            model = LogisticRegression(C=math.inf, solver="newton-cholesky", tol=1e-12, max_iter=100).fit(z.reshape(-1, 1), label)
    except ConvergenceWarning:
        return undefined | {"calibration_in_the_large": float(in_the_large)}
    return {"calibration_intercept": float(model.intercept_[0]), "calibration_slope": float(model.coef_[0, 0]),
            "calibration_in_the_large": float(in_the_large)}


def fit_temperature(label: np.ndarray, prob: np.ndarray) -> float:
    """The T > 0 minimising the log loss of sigmoid(logit(p) / T), searched in [0.01, 100]."""
    z = to_logit(prob)

    def mean_log_loss(log_t: float) -> float:
        scaled = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, scaled) - label * scaled))

    result = minimize_scalar(mean_log_loss, bounds=(math.log(0.01), math.log(100.0)), method="bounded", options={"xatol": 1e-10})
    return float(math.exp(result.x))


def apply_temperature(prob: np.ndarray, temperature: float) -> np.ndarray:
    return expit(to_logit(np.asarray(prob, dtype=np.float64)) / temperature)


def subgroup_masks(frame: pl.DataFrame, age_bands: tuple[float, ...]) -> dict[str, dict[str, np.ndarray]]:
    """Non-empty subgroups of the optional `sex` and `age` columns, as boolean masks over the frame's rows."""
    groups = {}
    if "sex" in frame.columns:
        sex = frame["sex"].cast(pl.String)
        groups["sex"] = {value: (sex == value).fill_null(False).to_numpy() for value in sorted(sex.drop_nulls().unique().to_list())}
    if "age" in frame.columns and age_bands:
        age = frame["age"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        edges = (-math.inf, *age_bands, math.inf)
        bands = {_band_name(low, high): (age >= low) & (age < high) for low, high in zip(edges[:-1], edges[1:])}
        groups["age"] = {name: mask for name, mask in bands.items() if mask.any()}
    return groups


def _band_name(low: float, high: float) -> str:
    if low == -math.inf:
        return f"under_{high:g}"
    return f"{low:g}_plus" if high == math.inf else f"{low:g}-{high:g}"


def bootstrap_cis(label: np.ndarray, prob: np.ndarray, threshold: float, *, resamples: int, level: float, rng: np.random.Generator) -> dict | None:
    """Percentile CIs from resampling cases and controls separately (each resample keeps the split's case count)."""
    if resamples == 0 or not 0 < label.sum() < len(label):
        return None
    positives, negatives = np.sort(prob[label == 1]), np.sort(prob[label == 0])
    chunk = max(1, BOOTSTRAP_CELLS // len(prob))
    draw = _resample_metrics(positives, negatives, threshold)
    stats = np.concatenate([draw(min(chunk, resamples - start), rng) for start in range(0, resamples, chunk)])
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail], axis=0)
    return {name: {"low": float(lo), "high": float(hi)} for name, lo, hi in zip(CI_METRICS, low, high)}


def resample_counts(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, n): how often each of n items is drawn in each of `size` resamples with replacement."""
    draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
    return np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)


def _resample_metrics(positives: np.ndarray, negatives: np.ndarray, threshold: float):
    """draw(size, rng) -> (size, len(CI_METRICS)) metrics of `size` resamples, computed from draw counts instead of
    copied arrays; `positives` and `negatives` are sorted scores, and what does not depend on the draw is computed once."""
    n_pos, n_neg = len(positives), len(negatives)
    # AUROC: for each positive, the drawn negatives below it (ties count half), from cumulative counts over sorted negatives.
    below, not_above = np.searchsorted(negatives, positives, "left"), np.searchsorted(negatives, positives, "right")
    # AUPRC = mean over drawn positives of the precision at their score (all tied scores counted), as sklearn's step sum.
    scores = np.concatenate([positives, negatives])
    order = np.argsort(-scores, kind="stable")
    is_case = (order < n_pos).astype(np.float64)
    position = np.arange(len(scores))
    last_of_tie = np.r_[scores[order][1:] != scores[order][:-1], True]
    case_tie_end = np.minimum.accumulate(np.where(last_of_tie, position, len(scores))[::-1])[::-1][is_case == 1]
    case_errors, control_errors = (1 - positives) ** 2, negatives**2
    detected, cleared = (positives >= threshold).astype(np.float64), (negatives < threshold).astype(np.float64)

    def draw(size: int, rng: np.random.Generator) -> np.ndarray:
        w_pos, w_neg = resample_counts(n_pos, size, rng), resample_counts(n_neg, size, rng)
        cumulative = np.zeros((size, n_neg + 1))
        np.cumsum(w_neg, axis=1, out=cumulative[:, 1:])
        auroc = (w_pos * (cumulative[:, below] + cumulative[:, not_above]) / 2).sum(axis=1) / (n_pos * n_neg)
        weights = np.concatenate([w_pos, w_neg], axis=1)[:, order]
        true_pos, seen = np.cumsum(weights * is_case, axis=1), np.cumsum(weights, axis=1)
        precision = true_pos[:, case_tie_end] / np.maximum(seen[:, case_tie_end], 1)
        auprc = (weights[:, is_case == 1] * precision).sum(axis=1) / n_pos
        brier = (w_pos @ case_errors + w_neg @ control_errors) / (n_pos + n_neg)
        return np.column_stack([auroc, auprc, brier, w_pos @ detected / n_pos, w_neg @ cleared / n_neg])

    return draw


def flatten_metrics(metrics: dict) -> dict[str, float]:
    """Flat MLflow keys: test/auroc, test/auroc_ci_low, test/subgroup/sex_Female/auroc, test/calibrated/brier, ...

    MLflow metric names allow only letters, digits, _ - . / space, so subgroup names are sanitised
    (`sex=Female` would be refused).
    """
    flat = {"threshold": float(metrics["threshold"]["value"])}
    if metrics.get("temperature_scaling"):
        flat["temperature"] = float(metrics["temperature_scaling"]["temperature"])
    for split in ("validation", "test"):
        _flatten_block(flat, split, metrics[split])
    return flat


def _flatten_block(flat: dict, prefix: str, block: dict) -> None:
    for key, value in block.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}/{key}"] = float(value)
    for name, interval in (block.get("ci") or {}).items():
        flat[f"{prefix}/{name}_ci_low"], flat[f"{prefix}/{name}_ci_high"] = float(interval["low"]), float(interval["high"])
    for group, subgroups in (block.get("subgroups") or {}).items():
        for name, sub in subgroups.items():
            _flatten_block(flat, f"{prefix}/subgroup/{re.sub(r'[^A-Za-z0-9_.-]', '_', f'{group}_{name}')}", sub)
    if block.get("calibrated"):
        _flatten_block(flat, f"{prefix}/calibrated", block["calibrated"])
