"""Baseline characteristics of a synthetic UK Biobank cohort, before any treatment effect.

Dates are day numbers (days since 1970-01-01, int64) throughout the simulator. Targets are the whole-
cohort marginals of shared ukb_reference.md section 4 and their usual correlations: blood pressure and
waist follow BMI and age, HDL falls with triglycerides and BMI, diabetes follows BMI and ethnicity,
smoking and BMI follow deprivation, family history of heart disease follows a latent polygenic score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadft.data.ukb.centres import SCOTLAND_CENTRES, WALES_CENTRES

DAYS_PER_YEAR = 365.25
RECRUITMENT_START, RECRUITMENT_MAIN, RECRUITMENT_END = (
    np.datetime64(d, "D").astype(np.int64) for d in ("2006-03-13", "2007-01-01", "2010-10-01")
)
# Assessment centres (coding 10) and their rough share of participants.
CENTRES = {
    11001: 18, 11002: 12, 11003: 18, 11004: 18, 11005: 17, 11006: 20, 11007: 27, 11008: 25, 11009: 37,
    11010: 44, 11011: 37, 11012: 18, 11013: 32, 11014: 28, 11016: 31, 11017: 17, 11018: 29, 11020: 23,
    11021: 29, 11022: 3, 11023: 1.5, 10003: 0.8,
}  # fmt: skip
SCOTLAND_WALES_CENTRES = SCOTLAND_CENTRES + WALES_CENTRES  # their hospital records go back to ICD-9
# Ethnic background (coding 1001), % of participants: white 94.5, Black 1.6.
ETHNICITY = {
    1001: 88.3, 1002: 2.7, 1003: 3.4, 1: 0.1, 2001: 0.12, 2002: 0.08, 2003: 0.17, 2004: 0.2, 3001: 1.15,
    3002: 0.35, 3003: 0.05, 3004: 0.4, 4001: 0.85, 4002: 0.65, 4003: 0.05, 4: 0.05, 5: 0.3, 6: 0.85,
    -1: 0.05, -3: 0.3,
}  # fmt: skip
BLACK_CODES = (4, 4001, 4002, 4003)
SOUTH_ASIAN_CODES = (3001, 3002, 3003)


@dataclass
class Baseline:
    """One entry per participant; `*_pre` values are before the effect of any medication."""

    eid: np.ndarray
    female: np.ndarray
    birth_day: np.ndarray
    baseline_day: np.ndarray
    age: np.ndarray  # exact age at baseline, years
    age_years: np.ndarray  # completed years at baseline (21022, 21003)
    centre: np.ndarray
    ethnicity: np.ndarray
    black: np.ndarray
    south_asian: np.ndarray
    townsend: np.ndarray
    smoking: np.ndarray  # coding 90: 0 never, 1 previous, 2 current, -3 prefer not to answer
    pack_years: np.ndarray  # NaN where not asked or not answered
    alcohol: np.ndarray
    ipaq: np.ndarray  # -1 where not derivable (missing in the extract)
    bmi: np.ndarray
    waist: np.ndarray
    hip: np.ndarray
    sbp_pre: np.ndarray
    dbp_pre: np.ndarray
    diabetes: np.ndarray  # doctor-diagnosed (what 2443 = 1 reports when answered truthfully)
    hba1c: np.ndarray
    glucose: np.ndarray
    triglycerides_pre: np.ndarray
    hdl: np.ndarray
    ldl_pre: np.ndarray
    total_chol_pre: np.ndarray
    crp: np.ndarray
    lpa: np.ndarray
    creatinine: np.ndarray
    cystatin_c: np.ndarray
    polygenic: np.ndarray  # latent, never written: reached only through family history
    father_heart: np.ndarray
    mother_heart: np.ndarray
    sibling_heart: np.ndarray
    has_siblings: np.ndarray
    # Conditions that raise CAD risk and show only in the medical history (hospital diagnoses before baseline): the
    # signal a model can find only by reading the history (text.history).
    angina: np.ndarray  # stable angina: broad CHD, not hard CAD
    peripheral_vascular: np.ndarray
    rheumatoid: np.ndarray

    @property
    def n(self) -> int:
        return len(self.eid)

    @property
    def male(self) -> np.ndarray:
        return ~self.female

    @property
    def current_smoker(self) -> np.ndarray:
        return self.smoking == 2

    @property
    def family_heart(self) -> np.ndarray:
        return self.father_heart | self.mother_heart | self.sibling_heart


def logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw_codes(rng: np.random.Generator, table: dict[int, float], n: int) -> np.ndarray:
    codes = np.array(list(table), dtype=np.int64)
    weights = np.array(list(table.values()), dtype=float)
    return codes[rng.choice(len(codes), size=n, p=weights / weights.sum())]


def completed_years(birth_day: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Age in whole years on `day`, by the calendar (a birthday not yet reached that year does not count)."""
    birth, on = birth_day.astype("datetime64[D]"), day.astype("datetime64[D]")
    birth_year, on_year = (d.astype("datetime64[Y]").astype(np.int64) for d in (birth, on))
    birth_month, birth_dom = _month_and_day(birth)
    on_month, on_dom = _month_and_day(on)
    birthday_not_reached = (on_month < birth_month) | ((on_month == birth_month) & (on_dom < birth_dom))
    return on_year - birth_year - birthday_not_reached


def _month_and_day(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    months = days.astype("datetime64[M]")
    return months.astype(np.int64) % 12, (days - months).astype(np.int64)


def draw_baseline(n: int, rng: np.random.Generator) -> Baseline:
    eid = np.sort(rng.choice(5_000_000, size=n, replace=False) + 1_000_000)
    female = rng.random(n) < 0.544
    # ~4% recruited in the 2006 pilot and first months, the rest spread over 2007 to autumn 2010.
    early = rng.random(n) < 0.04
    baseline_day = np.where(
        early,
        rng.integers(RECRUITMENT_START, RECRUITMENT_MAIN, n),
        rng.integers(RECRUITMENT_MAIN, RECRUITMENT_END + 1, n),
    )
    # Age 40-70, mean 56.1, SD 8.1, skewed to the older end as in UKB.
    age_drawn = 40.0 + 30.95 * rng.beta(1.41, 1.22, n)
    birth_day = baseline_day - np.round(age_drawn * DAYS_PER_YEAR).astype(np.int64)
    age = (baseline_day - birth_day) / DAYS_PER_YEAR
    age_years = completed_years(birth_day, baseline_day)
    centre = draw_codes(rng, CENTRES, n)
    ethnicity = draw_codes(rng, ETHNICITY, n)
    black = np.isin(ethnicity, BLACK_CODES)
    south_asian = np.isin(ethnicity, SOUTH_ASIAN_CODES)
    white = np.isin(ethnicity, (1, 1001, 1002, 1003))
    male = ~female
    a = age - 56.0

    deprivation = (rng.gamma(4.0, 1.0, n) - 4.0) / 2.0  # skewed to the deprived end
    townsend = np.clip(-1.5 + 3.0 * deprivation + 1.4 * ~white, -6.26, 11.0)

    smoke_current = rng.random(n) < logistic(-2.35 + 0.3 * male + 0.25 * deprivation - 0.03 * a)
    smoke_previous = ~smoke_current & (rng.random(n) < logistic(-0.55 + 0.35 * male + 0.025 * a + 0.1 * deprivation))
    smoking = np.where(smoke_current, 2, np.where(smoke_previous, 1, 0))
    smoking[rng.random(n) < 0.004] = -3
    pack_years = np.where(
        smoking == 2,
        np.exp(rng.normal(np.log(22.0) + 0.015 * a, 0.6, n)),
        np.exp(rng.normal(np.log(13.0) + 0.015 * a, 0.8, n)),
    )
    pack_years = np.round(np.clip(pack_years, 0.5, 150.0), 2)
    pack_years[(smoking <= 0) | (rng.random(n) < np.where(smoking == 2, 0.12, 0.3))] = np.nan

    alcohol = np.where(
        male,
        draw_codes(rng, {1: 26, 2: 26, 3: 25, 4: 9, 5: 8, 6: 6, -3: 0.1}, n),
        draw_codes(rng, {1: 15, 2: 20, 3: 27, 4: 13, 5: 15, 6: 10, -3: 0.1}, n),
    )
    ipaq = draw_codes(rng, {0: 19.5, 1: 40.5, 2: 40.0}, n)
    ipaq[rng.random(n) < 0.19] = -1
    active = (ipaq == 2).astype(float) - (ipaq == 0)

    log_bmi = np.where(male, np.log(27.9), np.log(26.95)) + rng.normal(0, np.where(male, 0.145, 0.18), n)
    log_bmi += 0.008 * townsend - 0.03 * active + 0.002 * a - 0.04 * south_asian + 0.05 * black
    bmi = np.clip(np.exp(log_bmi), 14.0, 70.0)
    bmi_dev = bmi - np.where(male, 27.8, 27.0)
    waist = (
        np.where(male, 97.0 + 2.45 * bmi_dev, 84.7 + 2.3 * bmi_dev)
        + 0.15 * a
        + rng.normal(0, np.where(male, 5.0, 6.0), n)
    )
    hip = np.where(male, 103.4 + 1.6 * bmi_dev, 103.4 + 1.9 * bmi_dev) + rng.normal(0, np.where(male, 4.0, 4.5), n)

    sbp_pre = np.where(male, 143.0 + 0.55 * a + 0.9 * bmi_dev, 135.5 + 0.85 * a + 0.8 * bmi_dev)
    sbp_pre += 3.0 * black + rng.normal(0, np.where(male, 15.5, 17.0), n)
    dbp_pre = np.where(male, 86.0, 81.5) + 0.32 * (sbp_pre - np.where(male, 143.0, 135.5)) + 0.35 * bmi_dev - 0.12 * a
    dbp_pre += rng.normal(0, 7.0, n)

    polygenic = rng.normal(0, 1, n)
    father_heart = rng.random(n) < logistic(-1.2 + 0.35 * polygenic + 0.015 * a)
    mother_heart = rng.random(n) < logistic(-1.65 + 0.35 * polygenic + 0.02 * a)
    has_siblings = rng.random(n) < 0.93
    sibling_heart = has_siblings & (rng.random(n) < logistic(-2.35 + 0.35 * polygenic + 0.045 * a))

    diabetes = rng.random(n) < logistic(
        -3.25 + 0.1 * bmi_dev + 0.045 * a + 0.4 * male + 1.1 * south_asian + 0.6 * black + 0.06 * townsend
    )
    undiagnosed = ~diabetes & (rng.random(n) < 0.008)
    hba1c = 34.0 + 0.1 * a + 0.25 * bmi_dev + 2.0 * south_asian + 1.5 * black + rng.normal(0, 3.0, n)
    hba1c = np.where(diabetes, np.exp(rng.normal(np.log(52.0), 0.2, n)), hba1c)
    hba1c = np.where(undiagnosed, rng.uniform(48.0, 62.0, n), hba1c)
    glucose = np.where(
        diabetes | undiagnosed,
        7.2 + 0.12 * (hba1c - 52.0) + rng.normal(0, 2.0, n),
        4.9 + 0.06 * (hba1c - 35.0) + rng.normal(0, 0.6, n),
    )
    glucose = np.clip(glucose, 2.0, 30.0)

    log_tg = np.where(male, np.log(1.72), np.log(1.28)) + 0.035 * bmi_dev + 0.2 * diabetes + rng.normal(0, 0.48, n)
    triglycerides_pre = np.exp(log_tg)
    log_hdl = np.where(male, np.log(1.27), np.log(1.5)) - 0.011 * bmi_dev - 0.2 * (log_tg - log_tg.mean())
    log_hdl += 0.04 * (alcohol <= 2) - 0.05 * smoke_current + rng.normal(0, 0.19, n)
    hdl = np.exp(log_hdl)
    ldl_pre = np.where(male, 3.7, 3.85 + 0.018 * a) + 0.012 * bmi_dev + rng.normal(0, 0.85, n)
    ldl_pre = np.clip(ldl_pre, 0.5, 9.5)
    total_chol_pre = ldl_pre + hdl + triglycerides_pre / 2.2 + rng.normal(0, 0.12, n)

    crp = np.exp(np.log(1.25) + 0.07 * bmi_dev + 0.3 * smoke_current + 0.04 * townsend + rng.normal(0, 1.0, n))
    crp = np.clip(crp, 0.08, 79.0)
    lpa = np.clip(np.exp(np.log(22.0) + 0.5 * black + rng.normal(0, 1.3, n)), 3.8, 450.0)
    creatinine = np.where(male, 82.0, 65.0) + 0.25 * a + rng.normal(0, np.where(male, 14.0, 11.0), n)
    creatinine = np.clip(creatinine + np.where(rng.random(n) < 0.02, rng.exponential(40.0, n), 0.0), 25.0, 900.0)
    cystatin_c = 0.88 + 0.006 * a + 0.05 * male + 0.004 * bmi_dev + 0.003 * (creatinine - np.where(male, 82.0, 65.0))
    cystatin_c = np.clip(cystatin_c + rng.normal(0, 0.1, n), 0.3, 6.0)

    # Drawn last, so the values above do not change with them.
    angina = rng.random(n) < logistic(
        -4.1 + 0.07 * a + 0.5 * male + 0.5 * diabetes + 0.4 * smoke_current + 0.3 * polygenic
    )
    peripheral_vascular = rng.random(n) < logistic(-4.6 + 0.07 * a + 0.9 * smoke_current + 0.7 * diabetes)
    rheumatoid = rng.random(n) < logistic(-4.9 + 0.03 * a + 0.9 * female)

    return Baseline(
        eid=eid, female=female, birth_day=birth_day, baseline_day=baseline_day, age=age, age_years=age_years,
        centre=centre, ethnicity=ethnicity, black=black, south_asian=south_asian, townsend=townsend,
        smoking=smoking, pack_years=pack_years, alcohol=alcohol, ipaq=ipaq, bmi=bmi, waist=waist, hip=hip,
        sbp_pre=sbp_pre, dbp_pre=dbp_pre, diabetes=diabetes, hba1c=hba1c, glucose=glucose,
        triglycerides_pre=triglycerides_pre, hdl=hdl, ldl_pre=ldl_pre, total_chol_pre=total_chol_pre, crp=crp,
        lpa=lpa, creatinine=creatinine, cystatin_c=cystatin_c, polygenic=polygenic, father_heart=father_heart,
        mother_heart=mother_heart, sibling_heart=sibling_heart, has_siblings=has_siblings,
        angina=angina, peripheral_vascular=peripheral_vascular, rheumatoid=rheumatoid,
    )  # fmt: skip
