"""Single-valued baseline fields as the extract shows them: rounded like UKB, with measurement noise
around the simulated truth, missing at realistic rates, and a repeat visit (instance 1) for ~10%.

Readings differ from the truth the hazards use: two automated blood-pressure readings scatter around
the latent value (or, for ~5%, two manual ones instead), lab values carry assay noise, Lp(a) above the
assay's range is missing, and some answers are "do not know" / "prefer not to answer".
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from cadft.synth.codelists import NO_DAY, date_values, list_series
from cadft.synth.cohort import DAYS_PER_YEAR, Baseline, completed_years
from cadft.synth.outcomes import Outcomes
from cadft.synth.treatment import Treatment

REPEAT_START, REPEAT_END = (np.datetime64(d, "D").astype(np.int64) for d in ("2012-08-01", "2013-06-30"))
LPA_ASSAY_MAX = 189.0  # nmol/L; higher values are not reported


def values(x: np.ndarray, missing: np.ndarray | None = None, decimals: int | None = None) -> pl.Series:
    """A nullable series; floats rounded to UKB's decimals, or integers when `decimals` is None."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        x = np.round(x, decimals) if decimals is not None else np.round(x).astype(np.int64)
    absent = missing if missing is not None else np.zeros(x.shape, dtype=bool)
    if x.dtype.kind == "f":
        absent = absent | np.isnan(x)
    return pl.Series(pa.array(np.where(absent, 0, x), mask=absent))


def dates(days: np.ndarray) -> pl.Series:
    return pl.Series(date_values(days))


def _readings(
    rng: np.random.Generator, true: np.ndarray, noise_sd: float, present: np.ndarray, second: np.ndarray
) -> pl.Series:
    """Two readings per person (the second a little lower, as people settle); one where `second` is False."""
    first = np.round(true + rng.normal(0, noise_sd, true.size)).astype(np.int64)
    later = np.round(true - 1.5 + rng.normal(0, noise_sd, true.size)).astype(np.int64)
    counts = np.where(present, np.where(second, 2, 1), 0)
    offsets = np.zeros(true.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = np.column_stack([first, later]).ravel()
    keep = (np.arange(2)[None, :] < counts[:, None]).ravel()
    return list_series(offsets, pa.array(flat[keep]))


def baseline_fields(b: Baseline, t: Treatment, rng: np.random.Generator) -> dict[tuple[int, int], pl.Series]:
    n = b.n

    def r(share: float) -> np.ndarray:  # missing at random
        return rng.random(n) < share

    def assay(x: np.ndarray, cv: float) -> np.ndarray:  # analytical noise of a lab measurement
        return x * np.exp(rng.normal(0, cv, n))

    year_of_birth = b.birth_day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    fields = {
        (31, 0): values(b.male.astype(np.int64)),
        (34, 0): values(year_of_birth),
        (53, 0): dates(b.baseline_day),
        (54, 0): values(b.centre),
        (21000, 0): values(b.ethnicity),
        (21003, 0): values(b.age_years),
        (21022, 0): values(b.age_years),
        (22189, 0): values(b.townsend, r(0.0012), 5),
        (21001, 0): values(b.bmi, r(0.006), 4),
        (48, 0): values(b.waist, r(0.004)),
        (49, 0): values(b.hip, r(0.004)),
        (20116, 0): values(b.smoking, r(0.002)),
        (20161, 0): values(b.pack_years, None, 2),
        (1558, 0): values(b.alcohol, r(0.001)),
        (22032, 0): values(b.ipaq, b.ipaq < 0),
    }
    # Blood pressure: a visit-level offset shared by both readings, then reading noise.
    manual = r(0.05)
    neither = r(0.003)
    second = ~r(0.01)
    visit_sbp = t.sbp + rng.normal(0, 4.0, n)
    visit_dbp = t.dbp + rng.normal(0, 2.5, n)
    fields[(4080, 0)] = _readings(rng, visit_sbp, 6.0, ~manual & ~neither, second)
    fields[(4079, 0)] = _readings(rng, visit_dbp, 4.0, ~manual & ~neither, second)
    fields[(93, 0)] = _readings(rng, visit_sbp + 2.0, 7.0, manual & ~neither, second)
    fields[(94, 0)] = _readings(rng, visit_dbp + 1.0, 4.5, manual & ~neither, second)

    # Lab: ~4.5% gave no usable blood sample; each assay misses a few more (HDL and glucose more often).
    no_blood = r(0.045)
    fields[(30690, 0)] = values(assay(t.total_chol, 0.02), no_blood | r(0.003), 3)
    fields[(30760, 0)] = values(assay(b.hdl, 0.025), no_blood | r(0.08), 3)
    fields[(30780, 0)] = values(assay(t.ldl, 0.025), no_blood | r(0.005), 3)
    fields[(30870, 0)] = values(assay(t.triglycerides, 0.03), no_blood | r(0.003), 3)
    fields[(30740, 0)] = values(assay(b.glucose, 0.03), no_blood | r(0.075), 3)
    fields[(30710, 0)] = values(assay(b.crp, 0.05), no_blood | r(0.004), 2)
    fields[(30790, 0)] = values(assay(b.lpa, 0.05), no_blood | r(0.14) | (b.lpa > LPA_ASSAY_MAX), 2)
    fields[(30700, 0)] = values(assay(b.creatinine, 0.03), no_blood | r(0.003), 1)
    fields[(30720, 0)] = values(assay(b.cystatin_c, 0.03), no_blood | r(0.003), 3)
    fields[(30750, 0)] = values(assay(b.hba1c, 0.02), r(0.03), 1)  # measured in a separate (red cell) sample

    # Diabetes diagnosed by a doctor: a few women answer yes for gestational diabetes only.
    diabetes_answer = np.where(b.diabetes | (b.female & r(0.004)), 1, 0)
    special = rng.random(n)
    diabetes_answer = np.where(special < 0.002, -1, np.where(special < 0.0025, -3, diabetes_answer))
    fields[(2443, 0)] = values(diabetes_answer, r(0.001))
    return fields


def repeat_visit_fields(
    b: Baseline, t: Treatment, outcomes: Outcomes, rng: np.random.Generator
) -> dict[tuple[int, int], pl.Series]:
    """Instance 1 for ~10% (alive and in contact at the 2012-13 repeat visit). Values there may already
    reflect events after baseline: a reader using them for baseline prediction leaks the outcome."""
    n = b.n
    day = REPEAT_START + rng.integers(0, REPEAT_END - REPEAT_START + 1, n)
    attended = (rng.random(n) < 0.1) & (outcomes.record_end_day > day)
    years = (day - b.baseline_day) / DAYS_PER_YEAR
    had_event = outcomes.cad_day < day
    sbp = t.sbp + 0.5 * years - 8.0 * had_event
    readings = _readings(rng, sbp + rng.normal(0, 4.0, n), 6.0, attended, ~(rng.random(n) < 0.01))
    started_statin = had_event & ~t.lipid_lowering
    total_chol = t.total_chol * np.exp(rng.normal(0, 0.07, n)) - 1.4 * started_statin
    return {
        (53, 1): dates(np.where(attended, day, NO_DAY)),
        (21003, 1): values(completed_years(b.birth_day, day), ~attended),
        (4080, 1): readings,
        (30690, 1): values(np.clip(total_chol, 1.5, None), ~attended | (rng.random(n) < 0.25), 3),
    }
