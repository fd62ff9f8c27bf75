"""Pooled Cohort Equations (2013 ACC/AHA): 10-year risk of a first hard ASCVD event.

risk = 1 - S0 ** exp(lp - mean), with the linear predictor `lp` summed over the terms below using
the coefficients of the participant's sex/race group (white equations for everyone who is not Black).
Inputs are numpy-broadcastable arrays; cholesterol is taken in mmol/L and converted to mg/dL here.
Missing inputs (NaN) give NaN. No clipping to the equations' validated ranges (age 40-79) is done.

`pce_scores` applies them to the prepared table's feature columns (the `pce` baselines): missing numeric inputs get
train medians (counted per split in metrics.json and logged); labels are compared with the registry's labels, and a
missing label counts as "not" (not Black, not treated, not a smoker, not diabetic).
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from cadft.errors import CadftError

log = logging.getLogger(__name__)

MG_DL_PER_MMOL_L = 38.67
# Ethnicity labels (coding 1001) of the Black group; the mixed "White and Black ..." labels are not in it.
BLACK_ETHNICITIES = ("Black or Black British", "Caribbean", "African", "Any other Black background")
PCE_NUMERIC_INPUTS = ("age", "cholesterol", "hdl", "systolic_bp")  # imputed with train medians when missing
PCE_LABEL_INPUTS = (
    "sex",
    "ethnicity",
    "bp_medication",
    "smoking",
    "diabetes",
)  # compared with labels; missing is "not"

GROUPS = ("white_women", "white_men", "black_women", "black_men")

# One row per term, one column per group in GROUPS order (Goff et al. 2013, table A; reference section 5).
# A blank cell in the publication is 0 here.
COEFFICIENTS: dict[str, tuple[float, float, float, float]] = {
    "ln_age": (-29.799, 12.344, 17.114, 2.469),
    "ln_age_squared": (4.884, 0.0, 0.0, 0.0),
    "ln_tc": (13.540, 11.853, 0.940, 0.302),
    "ln_age_x_ln_tc": (-3.114, -2.664, 0.0, 0.0),
    "ln_hdl": (-13.578, -7.990, -18.920, -0.307),
    "ln_age_x_ln_hdl": (3.149, 1.769, 4.475, 0.0),
    "ln_sbp_treated": (2.019, 1.797, 29.291, 1.916),
    "ln_age_x_ln_sbp_treated": (0.0, 0.0, -6.432, 0.0),
    "ln_sbp_untreated": (1.957, 1.764, 27.820, 1.809),
    "ln_age_x_ln_sbp_untreated": (0.0, 0.0, -6.087, 0.0),
    "smoker": (7.574, 7.837, 0.691, 0.549),
    "ln_age_x_smoker": (-1.665, -1.795, 0.0, 0.0),
    "diabetes": (0.661, 0.658, 0.874, 0.645),
}
BASELINE_SURVIVAL = np.array([0.9665, 0.9144, 0.9533, 0.8954])  # S0 at 10 years, per group
MEAN_LINEAR_PREDICTOR = np.array([-29.18, 61.18, 86.61, 19.54])  # per group

_TERMS = tuple(COEFFICIENTS)
_COEFFICIENT_MATRIX = np.array([COEFFICIENTS[term] for term in _TERMS]).T  # (group, term)


def pce_group(female, black) -> np.ndarray:
    """Index into GROUPS: 0 white women, 1 white men, 2 black women, 3 black men."""
    female = np.asarray(female, dtype=bool)
    black = np.asarray(black, dtype=bool)
    return (2 * black + ~female).astype(np.intp)


def pce_linear_predictor(
    age, female, black, total_chol_mmol, hdl_mmol, sbp, bp_treated, smoker, diabetes
) -> np.ndarray:
    """The uncentred sum of beta * x of each participant's group equation."""
    age, female, black, tc, hdl, sbp, treated, smoker, diabetes = np.broadcast_arrays(
        *(
            np.asarray(v, dtype=float)
            for v in (age, female, black, total_chol_mmol, hdl_mmol, sbp, bp_treated, smoker, diabetes)
        )
    )
    ln_age = np.log(age)
    ln_tc = np.log(tc * MG_DL_PER_MMOL_L)
    ln_hdl = np.log(hdl * MG_DL_PER_MMOL_L)
    ln_sbp = np.log(sbp)
    features = {
        "ln_age": ln_age,
        "ln_age_squared": ln_age**2,
        "ln_tc": ln_tc,
        "ln_age_x_ln_tc": ln_age * ln_tc,
        "ln_hdl": ln_hdl,
        "ln_age_x_ln_hdl": ln_age * ln_hdl,
        "ln_sbp_treated": treated * ln_sbp,
        "ln_age_x_ln_sbp_treated": treated * ln_age * ln_sbp,
        "ln_sbp_untreated": (1 - treated) * ln_sbp,
        "ln_age_x_ln_sbp_untreated": (1 - treated) * ln_age * ln_sbp,
        "smoker": smoker,
        "ln_age_x_smoker": ln_age * smoker,
        "diabetes": diabetes,
    }
    coefficients = _COEFFICIENT_MATRIX[pce_group(female, black)]  # (..., term)
    return sum(coefficients[..., i] * features[term] for i, term in enumerate(_TERMS))


def pce_risk(age, female, black, total_chol_mmol, hdl_mmol, sbp, bp_treated, smoker, diabetes, s0=None) -> np.ndarray:
    """10-year ASCVD risk in [0, 1]. `s0` overrides the group's baseline survival (scalar or per person)."""
    lp = pce_linear_predictor(age, female, black, total_chol_mmol, hdl_mmol, sbp, bp_treated, smoker, diabetes)
    group = pce_group(*np.broadcast_arrays(female, black, lp)[:2])
    survival = BASELINE_SURVIVAL[group] if s0 is None else np.broadcast_to(np.asarray(s0, dtype=float), lp.shape)
    return 1.0 - survival ** np.exp(lp - MEAN_LINEAR_PREDICTOR[group])


def pce_scores(splits: dict[str, pl.DataFrame]):
    absent = [c for c in PCE_NUMERIC_INPUTS + PCE_LABEL_INPUTS if c not in splits["train"].columns]
    if absent:
        raise CadftError(
            f"the Pooled Cohort Equations need feature column(s) {', '.join(absent)}, which the prepared table "
            f"lacks; add them to data.features or leave pce out of the baselines"
        )
    medians = {c: splits["train"][c].cast(pl.Float64).median() for c in PCE_NUMERIC_INPUTS}
    unmeasured = [c for c, median in medians.items() if median is None]
    if unmeasured:
        raise CadftError(
            f"PCE input(s) {', '.join(unmeasured)} are missing for every train participant: no median to impute"
        )
    return tuple(pce_risk_of(splits[name], medians, name) for name in ("validation", "test")), {}


def pce_risk_of(rows: pl.DataFrame, medians: dict[str, float], split: str) -> np.ndarray:
    missing = {c: rows[c].null_count() for c in PCE_NUMERIC_INPUTS if rows[c].null_count()}
    if missing:
        log.warning(
            "PCE %s: %d of %d participants had missing inputs imputed with train medians (%s)",
            split,
            pce_imputed_participants(rows),
            rows.height,
            ", ".join(f"{c} {n}" for c, n in missing.items()),
        )
    number = {c: rows[c].cast(pl.Float64).fill_null(medians[c]).to_numpy() for c in PCE_NUMERIC_INPUTS}

    def equals(column: str, *labels: str) -> np.ndarray:
        return rows[column].cast(pl.String).is_in(labels).fill_null(False).to_numpy()

    return pce_risk(
        age=number["age"],
        female=equals("sex", "Female"),
        black=equals("ethnicity", *BLACK_ETHNICITIES),
        total_chol_mmol=number["cholesterol"],
        hdl_mmol=number["hdl"],
        sbp=number["systolic_bp"],
        bp_treated=equals("bp_medication", "Yes"),
        smoker=equals("smoking", "Current"),
        diabetes=equals("diabetes", "Yes"),
    )


def pce_imputed_participants(rows: pl.DataFrame) -> int:
    """Participants of `rows` with at least one PCE numeric input missing (scored with a train median instead)."""
    return int(rows.select(pl.any_horizontal(pl.col(c).is_null() for c in PCE_NUMERIC_INPUTS).sum()).item())
