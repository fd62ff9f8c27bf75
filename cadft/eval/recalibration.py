"""Recalibration (`eval.recalibration`): turn a model's score into a risk, fitted on validation, saved with the model.

- platt: logistic recalibration risk = sigmoid(a + b * logit(p)), a and b fitted on validation (scikit-learn,
  unpenalised). It repairs both the intercept (case enrichment, class weights) and the spread. A recalibration
  never reverses the model's ranking: when the fitted slope is not positive (the score ranks validation the wrong
  way, as an untrained model can), only the intercept is refitted, with the slope fixed at 1 (`slope_fixed`: 1).
- isotonic: a monotone step function fitted on validation (scikit-learn's IsotonicRegression), applied by linear
  interpolation between its knots, clipped at the ends.
- prior_shift: no fitting; the known training sampling is undone analytically. A classifier trained on a sample
  with case fraction pi_s and class weights (w0, w1) learns odds inflated by pi_s w1 / ((1 - pi_s) w0) relative to
  a population with prevalence pi, so logit(risk) = logit(p) - log(pi_s w1 / ((1 - pi_s) w0)) + log(pi / (1 - pi)).
  pi is the whole training split's prevalence, pi_s the trained-on case fraction (the oversampling target, or the
  subsample's own fraction).
- none: the score as it is.

Under task.censoring=ipcw, platt and isotonic are fitted with the validation split's IPCW weights (cadft.data.ipcw), and
prior_shift's population prevalence is the weighted one.

A fitted recalibrator is a small JSON file (calibrator.json beside the adapter); `Recalibrator.load` gives back
exactly the same function.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from cadft.errors import CadftError
from cadft.files import write_text_atomic

METHODS = ("platt", "isotonic", "prior_shift", "none")
PROB_CLIP = 1e-12  # logit(0) and logit(1) are infinite: probabilities are clipped to [PROB_CLIP, 1 - PROB_CLIP] first


def to_logit(prob) -> np.ndarray:
    return logit(np.clip(np.asarray(prob, dtype=np.float64), PROB_CLIP, 1 - PROB_CLIP))


@dataclass(frozen=True)
class TrainingSample:
    """What the model was trained on, relative to the population it should predict for (prior_shift's input)."""

    population_cases: float  # the whole training split (IPCW-weighted sums under task.censoring=ipcw)
    population_n: float
    sample_fraction: float  # case fraction the model saw per epoch (oversampling target or the subsample's own)
    class_weights: tuple[float, float] = (1.0, 1.0)

    def save(self, path: Path) -> Path:
        return write_text_atomic(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainingSample | None:
        """The sample saved beside a model; None for models saved without one."""
        if not Path(path).is_file():
            return None
        data = json.loads(Path(path).read_text())
        return cls(**(data | {"class_weights": tuple(data["class_weights"])}))

    def log_odds_shift(self) -> float:
        """log(trained-on odds) - log(population odds): what prior_shift subtracts from the logit."""
        pi = self.population_cases / self.population_n
        trained = math.log(self.sample_fraction / (1 - self.sample_fraction)) + math.log(
            self.class_weights[1] / self.class_weights[0]
        )
        return trained - math.log(pi / (1 - pi))


@dataclass(frozen=True)
class Recalibrator:
    method: str
    fitted_on: str
    params: dict = field(default_factory=dict)

    def apply(self, prob) -> np.ndarray:
        prob = np.asarray(prob, dtype=np.float64)
        if self.method == "none":
            return prob.copy()
        if self.method == "platt":
            return expit(self.params["intercept"] + self.params["slope"] * to_logit(prob))
        if self.method == "prior_shift":
            return expit(to_logit(prob) - self.params["log_odds_shift"])
        return np.interp(prob, self.params["x"], self.params["y"])  # isotonic: IsotonicRegression.predict, clipped

    def save(self, path: Path) -> Path:
        return write_text_atomic(path, json.dumps(asdict(self), sort_keys=True, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Recalibrator:
        try:
            data = json.loads(Path(path).read_text())
            recalibrator = cls(str(data["method"]), str(data["fitted_on"]), dict(data["params"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CadftError(f"{path}: not a readable cadft calibrator ({err})") from None
        if recalibrator.method not in METHODS:
            raise CadftError(f"{path}: recalibration method {recalibrator.method!r}; allowed: {', '.join(METHODS)}")
        problem = recalibrator.problem()
        if problem:
            raise CadftError(f"{path}: {problem}: it would turn scores into NaN or wrong risks; restore it or refit it")
        return recalibrator

    def problem(self) -> str | None:
        """Why these parameters cannot be applied (missing, not finite, isotonic knots of unequal length), or None."""
        needed = {"platt": ("intercept", "slope"), "prior_shift": ("log_odds_shift",), "isotonic": ("x", "y")}
        missing = [key for key in needed.get(self.method, ()) if key not in self.params]
        if missing:
            return f"{self.method} calibrator without {', '.join(missing)}"
        for key in needed.get(self.method, ()):
            value = self.params[key]
            values = value if isinstance(value, list) else [value]
            if not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
            ):
                what = "is not a finite number"
                if isinstance(value, list):
                    what = "holds values that are not finite numbers"
                return f"calibrator parameter {key}={_shown(value)} {what}"
        if self.method == "isotonic" and len(self.params["x"]) != len(self.params["y"]):
            return "isotonic calibrator whose x and y knots differ in number"
        return None


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fit(
    method: str,
    label: np.ndarray,
    prob: np.ndarray,
    *,
    sample: TrainingSample | None = None,
    weight: np.ndarray | None = None,
) -> Recalibrator:
    """Fit `method` on validation labels and scores, IPCW-weighted when given weights (prior_shift uses the training
    sample instead)."""
    if method not in METHODS:
        raise CadftError(f"eval.recalibration={method!r}; allowed: {', '.join(METHODS)}")
    if method == "none":
        return Recalibrator("none", "nothing")
    if method == "prior_shift":
        if sample is None:
            raise CadftError(
                "eval.recalibration=prior_shift needs the training sample's case fraction and class weights, "
                "which this model did not record; use platt or isotonic"
            )
        return Recalibrator(
            "prior_shift",
            "training sample (analytic)",
            {"log_odds_shift": sample.log_odds_shift(), **asdict(sample), "class_weights": list(sample.class_weights)},
        )
    label, prob = np.asarray(label, dtype=np.int64), np.asarray(prob, dtype=np.float64)
    if not 0 < label.sum() < len(label):
        raise CadftError(
            f"eval.recalibration={method} is fitted on validation, which has {int(label.sum())} cases among "
            f"{len(label)} participants: it needs both; use eval.recalibration=none or prior_shift"
        )
    if method == "platt":
        return Recalibrator("platt", "validation", _platt(label, prob, weight))
    from sklearn.isotonic import IsotonicRegression

    if weight is not None:  # the participants whose label is known
        label, prob, weight = label[weight > 0], prob[weight > 0], weight[weight > 0]
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(prob, label, sample_weight=weight)
    return Recalibrator("isotonic", "validation", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})


def _platt(label: np.ndarray, prob: np.ndarray, weight: np.ndarray | None) -> dict:
    from scipy.optimize import brentq
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    z = to_logit(prob)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", ConvergenceWarning
        )  # separable validation: the slope grows; still a monotone map
        model = LogisticRegression(C=math.inf, solver="lbfgs", tol=1e-10, max_iter=1000).fit(
            z.reshape(-1, 1), label, sample_weight=weight
        )
    if model.coef_[0, 0] > 0:
        return {"intercept": float(model.intercept_[0]), "slope": float(model.coef_[0, 0]), "slope_fixed": 0}
    # Slope fixed at 1: the intercept's maximum-likelihood value makes the mean risk equal the observed rate.
    if weight is None:
        intercept = brentq(lambda a: expit(a + z).mean() - label.mean(), -100.0, 100.0, xtol=1e-12)
    else:
        rate = np.average(label, weights=weight)
        intercept = brentq(lambda a: np.average(expit(a + z), weights=weight) - rate, -100.0, 100.0, xtol=1e-12)
    return {"intercept": float(intercept), "slope": 1.0, "slope_fixed": 1}
