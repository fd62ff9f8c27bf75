"""Event hazards of the simulation, and the oracle risk computed from them in closed form.

Each non-prevalent participant faces three constant competing hazards from baseline: a first hard-CAD
event (lambda_cad), death from another cause (lambda_death) and loss to follow-up (LOSS_HAZARD). The CAD
hazard is the PCE hazard (its 10-year risk turned into a rate, scaled down because UKB volunteers are
healthier than the PCE cohorts) times modest non-PCE factors, so a flexible model can beat PCE, while
the latent polygenic score and the true (unmeasured) blood pressure keep the oracle out of reach.
"""

from __future__ import annotations

import numpy as np

from cadft.data.ukb.centres import SCOTLAND_CENTRES, WALES_CENTRES
from cadft.eval.baselines.pce import BASELINE_SURVIVAL, pce_group, pce_risk
from cadft.synth.cohort import Baseline, logistic
from cadft.synth.treatment import Treatment

HORIZON_YEARS = 10.0
# Hospital and death records end per country (the centre's, field 54) on the default task.censor_dates of
# conf/task/hard_cad.yaml (tests/synth/test_synth.py checks they agree): Wales' early end leaves late-recruited Welsh
# participants under 10 years of follow-up, as a real release can.
RECORD_END = {"England": "2022-10-31", "Scotland": "2022-08-31", "Wales": "2018-02-28"}
CAD_RATE_SCALE = 0.43  # PCE hazard x this lands incident 10-y hard CAD near 4%
PREVALENT_LOGIT_SHIFT = 1.85  # logit P(prevalent) = log(pre-treatment CAD hazard) + this: ~3% prevalent
LOSS_HAZARD = 0.00022  # per year: ~0.3% lost to follow-up by the record end
RECURRENT_CAD_FACTOR = 2.5  # CAD hazard multiplier once a person has had an event
# Log hazard ratios of the CAD hazard beyond the PCE's, per unit of each term of non_pce_terms: genetics and family,
# LDL beyond total cholesterol, Lp(a), adiposity, deprivation, inflammation, glycaemia below the diabetes threshold,
# kidney function, and the conditions only the medical history shows (HR 2.5, 2.0 and 1.6: in the range reported for
# stable angina, peripheral arterial disease and rheumatoid arthritis). The PCE's own log hazard has coefficient 1.
LOG_HAZARD_RATIOS = {
    "polygenic": 0.30,
    "family_heart": 0.10,
    "ldl": 0.12,
    "log_lpa": 0.18,
    "bmi": 0.015,
    "townsend": 0.03,
    "log_crp": 0.10,
    "hba1c_below_diabetes": 0.02,
    "cystatin_c": 0.6,
    "angina": 0.92,
    "peripheral_vascular": 0.7,
    "rheumatoid": 0.47,
}


def pce_hazard(age, female, black, total_chol, hdl, sbp, bp_treated, smoker, diabetes) -> np.ndarray:
    """Constant yearly hazard implied by the PCE 10-year risk, scaled by CAD_RATE_SCALE (through S0)."""
    s0 = BASELINE_SURVIVAL[pce_group(female, black)] ** CAD_RATE_SCALE
    risk = pce_risk(age, female, black, total_chol, hdl, sbp, bp_treated, smoker, diabetes, s0=s0)
    return -np.log1p(-risk) / HORIZON_YEARS


def non_pce_terms(b: Baseline, ldl: np.ndarray) -> dict[str, np.ndarray]:
    """Each participant's value of the terms of LOG_HAZARD_RATIOS (centred near the cohort's typical value)."""
    return {
        "polygenic": b.polygenic,
        "family_heart": b.family_heart,
        "ldl": ldl - 3.6,
        "log_lpa": np.log(b.lpa) - np.log(22.0),
        "bmi": b.bmi - 27.0,
        "townsend": b.townsend + 1.4,
        "log_crp": np.log(b.crp) - np.log(1.25),
        "hba1c_below_diabetes": np.where(b.diabetes, 0.0, np.clip(b.hba1c - 35.0, -10.0, 15.0)),
        "cystatin_c": b.cystatin_c - 0.9,
        "angina": b.angina,
        "peripheral_vascular": b.peripheral_vascular,
        "rheumatoid": b.rheumatoid,
    }


def non_pce_log_hazard_ratio(b: Baseline, ldl: np.ndarray) -> np.ndarray:
    """Risk factors outside the PCE: sum of LOG_HAZARD_RATIOS times their terms."""
    terms = non_pce_terms(b, ldl)
    return sum(ratio * terms[name] for name, ratio in LOG_HAZARD_RATIOS.items())


def _pce_hazard_on_treatment(b: Baseline, t: Treatment) -> np.ndarray:
    return pce_hazard(b.age, b.female, b.black, t.total_chol, b.hdl, t.sbp, t.bp_treated, b.current_smoker, b.diabetes)


def cad_hazard(b: Baseline, t: Treatment) -> np.ndarray:
    """Yearly hazard of a first hard-CAD event after baseline, from the on-treatment (true) values."""
    return _pce_hazard_on_treatment(b, t) * np.exp(non_pce_log_hazard_ratio(b, t.ldl))


def hazard_terms(b: Baseline, t: Treatment) -> dict[str, np.ndarray]:
    """The terms of the log CAD hazard: log_pce_hazard (coefficient 1) and non_pce_terms (LOG_HAZARD_RATIOS): what a
    correctly specified Cox model on the true values recovers."""
    return {"log_pce_hazard": np.log(_pce_hazard_on_treatment(b, t)), **non_pce_terms(b, t.ldl)}


def prevalent_probability(b: Baseline) -> np.ndarray:
    """P(hard CAD before baseline): rises with the pre-treatment hazard (which carries age)."""
    untreated = np.zeros(b.n, dtype=bool)
    pce = pce_hazard(
        b.age, b.female, b.black, b.total_chol_pre, b.hdl, b.sbp_pre, untreated, b.current_smoker, b.diabetes
    )
    return logistic(np.log(pce) + non_pce_log_hazard_ratio(b, b.ldl_pre) + PREVALENT_LOGIT_SHIFT)


def other_death_hazard(b: Baseline) -> np.ndarray:
    """Yearly hazard of death from a cause other than a hard-CAD event."""
    return np.exp(
        np.log(0.0028)
        + 0.085 * (b.age - 56.0)
        + 0.35 * b.male
        + 0.6 * b.current_smoker
        + 0.2 * (b.smoking == 1)
        + 0.05 * b.townsend
        + 0.5 * b.diabetes
        + 0.15 * (np.log(b.crp) - np.log(1.25))
        + 0.02 * np.abs(b.bmi - 25.0)
    )


def oracle_risk(cad: np.ndarray, death: np.ndarray, loss: float | np.ndarray, years: np.ndarray) -> np.ndarray:
    """P(first CAD event within `years`, before the competing death or loss): with constant hazards,
    cad / total * (1 - exp(-total * years))."""
    total = cad + death + loss
    return cad / total * -np.expm1(-total * years)


def record_end_day(centre: np.ndarray) -> np.ndarray:
    """The last day anything is recorded for a participant of each assessment centre: their country's RECORD_END."""
    day = {country: np.datetime64(date, "D").astype(np.int64) for country, date in RECORD_END.items()}
    return np.where(
        np.isin(centre, WALES_CENTRES),
        day["Wales"],
        np.where(np.isin(centre, SCOTLAND_CENTRES), day["Scotland"], day["England"]),
    )


def years_at_risk(baseline_day: np.ndarray, end_day: np.ndarray) -> np.ndarray:
    """The horizon, cut at the participant's record end (binding for Welsh participants recruited after Feb 2008)."""
    return np.clip(np.minimum(HORIZON_YEARS, (end_day - baseline_day) / 365.25), 0.0, None)
