"""One synthetic cohort: every registry field's values per (field, instance), and the oracle.

Each step draws from its own random stream spawned from the seed, so a seed always gives the same
cohort. Field values are polars Series, one entry per participant: scalars, or lists for array and
multi-select fields (their k-th elements fill array slot k; 41280's dates pair with 41270's codes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from cadft.data.ukb.registry import load_registry
from cadft.synth import hazards
from cadft.synth.codelists import NO_DAY, PLACEHOLDER_DAY, CodeList, date_values, list_series
from cadft.synth.cohort import Baseline, draw_baseline
from cadft.synth.contributions import COLUMN_PREFIX, true_contributions
from cadft.synth.hospital import record_hospital
from cadft.synth.measurements import baseline_fields, dates, repeat_visit_fields, values
from cadft.synth.outcomes import draw_outcomes, draw_prevalence
from cadft.synth.selfreport import record_self_reports
from cadft.synth.treatment import Treatment, draw_treatment

UNDATED_SHARE = 0.005  # hospital date slots left empty
PLACEHOLDER_SHARE = 0.0005  # hospital date slots holding UKB's 1900-01-01

FieldKey = tuple[int, int]  # (field, instance); fields without instances use 0


@dataclass
class Simulation:
    eid: pl.Series
    fields: dict[FieldKey, pl.Series]
    # eid, prevalent, risk (null for prevalent), incident (the simulated truth); log_hazard, reference_log_hazard and
    # true:<factor>, each factor's contribution to log_hazard - reference_log_hazard (cadft/synth/contributions.py;
    # null for prevalent, like risk)
    oracle: pl.DataFrame
    # eid and the true terms of each participant's log CAD hazard (hazards.hazard_terms): never written, for tests
    hazard_terms: pl.DataFrame

    @property
    def n(self) -> int:
        return self.oracle.height

    def summary(self) -> str:
        at_risk = self.oracle.filter(pl.col("prevalent") == 0)
        incident, risk = (at_risk[c].mean() or 0.0 for c in ("incident", "risk"))
        return (
            f"n={self.n:,}  prevalent hard CAD {100 * self.oracle['prevalent'].mean():.2f}%  "
            f"incident 10-y hard CAD {100 * incident:.2f}% (mean oracle risk {100 * risk:.2f}%)"
        )


def simulate(n: int, seed: int) -> Simulation:
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(9)]
    baseline = draw_baseline(n, streams[0])
    prevalence = draw_prevalence(baseline, streams[1])
    treatment = draw_treatment(baseline, prevalence.prevalent, streams[2])
    outcomes = draw_outcomes(baseline, treatment, prevalence, streams[3])
    cad_log_hazard = np.log(hazards.cad_hazard(baseline, treatment))
    hospital = record_hospital(baseline, prevalence, outcomes, cad_log_hazard, streams[4])
    answers = record_self_reports(
        baseline, treatment, prevalence, hospital.prior_qualifying_record, cad_log_hazard, streams[5]
    )

    registry = load_registry()
    fields = baseline_fields(baseline, treatment, streams[6])
    fields.update(repeat_visit_fields(baseline, treatment, outcomes, streams[7]))
    corrupt = streams[8]
    for code_field, codes in ((41270, hospital.icd10), (41271, hospital.icd9), (41272, hospital.opcs4)):
        date_field = registry[code_field].paired_with
        offsets, code_index, days = codes.assemble(n, registry[code_field].arrays)
        slot = corrupt.random(days.size)
        days = np.where(
            slot < UNDATED_SHARE, NO_DAY, np.where(slot < UNDATED_SHARE + PLACEHOLDER_SHARE, PLACEHOLDER_DAY, days)
        )
        fields[(code_field, 0)] = list_series(offsets, pa.array(codes.vocabulary[code_index]))
        fields[(date_field, 0)] = list_series(offsets, date_values(days))
    for field, answer_list in answers.items():
        fields[(field, 0)] = _code_list_series(answer_list, n, registry[field].arrays)
    fields[(40000, 0)] = dates(outcomes.death_day)
    underlying = hospital.underlying_cause
    fields[(40001, 0)] = pl.Series(pa.array(underlying, mask=underlying == ""))
    fields[(40002, 0)] = _code_list_series(hospital.contributory, n, registry[40002].arrays)
    fields[(191, 0)] = dates(outcomes.lost_day)
    fields[(190, 0)] = values(outcomes.lost_reason, outcomes.lost_reason == 0)

    oracle = pl.DataFrame(
        {
            "eid": baseline.eid,
            "prevalent": prevalence.prevalent.astype(np.int8),
            "risk": pl.Series(outcomes.risk).fill_nan(None),
            "incident": outcomes.incident.astype(np.int8),
        }
    ).with_columns(_true_log_hazard(baseline, treatment, prevalence.prevalent))
    terms = pl.DataFrame({"eid": baseline.eid, **hazards.hazard_terms(baseline, treatment)})
    return Simulation(eid=pl.Series("eid", baseline.eid), fields=fields, oracle=oracle, hazard_terms=terms)


def _true_log_hazard(baseline: Baseline, treatment: Treatment, prevalent: np.ndarray) -> list[pl.Series]:
    """The oracle's log-hazard columns: null for prevalent participants, whose first event is behind them."""
    contributions, log_hazard, reference = true_contributions(baseline, treatment)

    def column(name: str, values) -> pl.Series:
        return pl.Series(name, np.where(prevalent, np.nan, values), pl.Float64).fill_nan(None)

    return [
        column("log_hazard", log_hazard),
        column("reference_log_hazard", np.full(len(prevalent), reference)),
        *(column(COLUMN_PREFIX + factor, values) for factor, values in contributions.items()),
    ]


def _code_list_series(codes: CodeList, n: int, width: int) -> pl.Series:
    offsets, code_index, _ = codes.assemble(n, width)
    return list_series(offsets, pa.array(codes.vocabulary[code_index]))
