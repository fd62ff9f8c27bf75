"""Who had hard CAD before baseline, and what happens to everyone after it.

From baseline each participant draws exponential times to a CAD event, to death from another cause and
to loss to follow-up (hazards.py); the earliest decides. Prevalent participants keep a raised
(recurrent) CAD hazard, so they too have events after baseline that a phenotyper must not count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadft.synth import hazards
from cadft.synth.codelists import NO_DAY
from cadft.synth.cohort import DAYS_PER_YEAR, Baseline
from cadft.synth.treatment import Treatment

MI, REVASCULARISATION = 0, 1  # kinds of hard-CAD event: infarction, or revascularisation without one
FATAL_MI_SHARE = 0.17
POST_EVENT_CARDIAC_DEATH_HAZARD = 0.02  # per year after a non-fatal event
LOST_REASONS = {2: 30, 3: 40, 4: 20, 5: 10}  # 190 of the lost (a guess; 1, a death reported by a relative, is left out)


@dataclass
class Prevalence:
    prevalent: np.ndarray
    day: np.ndarray  # the event before baseline (NO_DAY when none)
    kind: np.ndarray


@dataclass
class Outcomes:
    cad_day: np.ndarray  # first CAD event after baseline (a recurrence for prevalent people), NO_DAY if none
    cad_kind: np.ndarray
    cad_fatal: np.ndarray
    death_day: np.ndarray  # NO_DAY when alive at the record end or lost before dying
    death_after_cad: np.ndarray  # a cardiac death after a non-fatal event
    lost_day: np.ndarray
    lost_reason: np.ndarray  # 190 where lost (0 where not)
    end_day: np.ndarray  # the participant's country's record end (hazards.record_end_day)
    incident: np.ndarray  # non-prevalent with a first event within the horizon (the simulated truth)
    risk: np.ndarray  # oracle: P(incident) in closed form; NaN for prevalent people

    @property
    def record_end_day(self) -> np.ndarray:
        """Last day anything is recorded: death, loss to follow-up or the country's record end."""
        return np.minimum(np.minimum(self.death_day, self.lost_day), self.end_day)


def draw_prevalence(b: Baseline, rng: np.random.Generator) -> Prevalence:
    prevalent = rng.random(b.n) < hazards.prevalent_probability(b)
    # Years before baseline, mostly recent, never before age ~32.
    span = np.clip(b.age - 32.0, 1.0, 25.0)
    years_before = 0.1 + (span - 0.1) * rng.beta(1.0, 1.6, b.n)
    day = np.where(prevalent, b.baseline_day - np.ceil(years_before * DAYS_PER_YEAR).astype(np.int64), NO_DAY)
    kind = np.where(rng.random(b.n) < 0.75, MI, REVASCULARISATION)
    return Prevalence(prevalent=prevalent, day=day, kind=kind)


def _day_after_baseline(baseline_day: np.ndarray, years: np.ndarray) -> np.ndarray:
    """The calendar day `years` after baseline, never baseline itself (on the day would read as prevalent)."""
    return baseline_day + np.floor(np.minimum(years, 200.0) * DAYS_PER_YEAR).astype(np.int64) + 1


def draw_outcomes(b: Baseline, t: Treatment, prevalence: Prevalence, rng: np.random.Generator) -> Outcomes:
    n, prevalent = b.n, prevalence.prevalent
    cad_rate = hazards.cad_hazard(b, t)
    death_rate = hazards.other_death_hazard(b)
    end_day = hazards.record_end_day(b.centre)
    years_at_risk = hazards.years_at_risk(b.baseline_day, end_day)
    risk = hazards.oracle_risk(cad_rate, death_rate, hazards.LOSS_HAZARD, years_at_risk)
    risk = np.where(prevalent, np.nan, risk)

    cad_years = rng.exponential(1.0, n) / (cad_rate * np.where(prevalent, hazards.RECURRENT_CAD_FACTOR, 1.0))
    death_years = rng.exponential(1.0, n) / death_rate
    lost_years = rng.exponential(1.0 / hazards.LOSS_HAZARD, n)
    post_event_years = rng.exponential(1.0 / POST_EVENT_CARDIAC_DEATH_HAZARD, n)

    cad_day = _day_after_baseline(b.baseline_day, cad_years)
    cad_happens = (cad_years < death_years) & (cad_years < lost_years) & (cad_day <= end_day)
    cad_kind = np.where(rng.random(n) < 0.7, MI, REVASCULARISATION)
    cad_fatal = cad_happens & (cad_kind == MI) & (rng.random(n) < FATAL_MI_SHARE)
    death_after_cad = cad_happens & ~cad_fatal & (cad_years + post_event_years < death_years)
    dies_years = np.where(cad_fatal, cad_years, np.where(death_after_cad, cad_years + post_event_years, death_years))
    death_day = _day_after_baseline(b.baseline_day, dies_years)
    recorded_death = (dies_years < lost_years) & (death_day <= end_day)
    lost_day = _day_after_baseline(b.baseline_day, lost_years)
    lost = (lost_years < dies_years) & (lost_day <= end_day)
    incident = ~prevalent & cad_happens & (cad_years <= years_at_risk)
    return Outcomes(
        cad_day=np.where(cad_happens, cad_day, NO_DAY),
        cad_kind=cad_kind,
        cad_fatal=cad_fatal,
        death_day=np.where(recorded_death, death_day, NO_DAY),
        death_after_cad=death_after_cad & recorded_death,
        lost_day=np.where(lost, lost_day, NO_DAY),
        lost_reason=np.where(
            lost,
            rng.choice(
                list(LOST_REASONS), size=n, p=np.array(list(LOST_REASONS.values())) / sum(LOST_REASONS.values())
            ),
            0,
        ),
        end_day=end_day,
        incident=incident,
        risk=risk,
    )
