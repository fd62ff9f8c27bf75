"""Each participant's true contribution of each risk factor (the oracle's true:<factor> columns): they add up to the
oracle's log-hazard minus the reference participant's, and a factor with a term of its own gets exactly that term's
change."""

from __future__ import annotations

import numpy as np
import polars as pl

from cadft.synth.contributions import COLUMN_PREFIX, FACTORS, REFERENCE, true_contributions


def test_the_true_contributions_in_the_oracle_sum_to_its_log_hazard_minus_the_reference(synthetic_cohort):
    oracle = pl.read_csv(synthetic_cohort[1])
    columns = [COLUMN_PREFIX + factor for factor in FACTORS]
    assert set(columns) <= set(oracle.columns)
    at_risk = oracle.filter(pl.col("prevalent") == 0)
    total = at_risk.select(pl.sum_horizontal(columns)).to_series().to_numpy()
    expected = (at_risk["log_hazard"] - at_risk["reference_log_hazard"]).to_numpy()
    np.testing.assert_allclose(total, expected, atol=1e-6)  # the file keeps 8 decimals
    assert at_risk["reference_log_hazard"].n_unique() == 1
    assert np.abs(at_risk.select(columns).to_numpy()).mean(axis=0).min() > 0  # every factor moves someone
    prevalent = oracle.filter(pl.col("prevalent") == 1)
    nulls = prevalent.select(["log_hazard", *columns]).null_count().row(0)
    assert prevalent.height and nulls == (prevalent.height,) * (1 + len(columns))  # like risk: none


def test_a_factor_with_a_term_of_its_own_gets_exactly_that_terms_change(monkeypatch):
    from cadft.synth.cohort import draw_baseline
    from cadft.synth.outcomes import draw_prevalence
    from cadft.synth.treatment import draw_treatment

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(3).spawn(3)]
    baseline = draw_baseline(500, streams[0])
    treatment = draw_treatment(baseline, draw_prevalence(baseline, streams[1]).prevalent, streams[2])
    monkeypatch.setattr("cadft.synth.contributions.PCE_BLOCK", 97)  # several blocks, the last one short
    contributions, log_hazard, reference = true_contributions(baseline, treatment)
    np.testing.assert_allclose(
        contributions["lipoprotein_a"], 0.18 * (np.log(baseline.lpa) - np.log(REFERENCE["lipoprotein_a"])), atol=1e-12
    )
    np.testing.assert_allclose(contributions["polygenic"], 0.30 * baseline.polygenic, atol=1e-12)
    np.testing.assert_allclose(sum(contributions.values()), log_hazard - reference, atol=1e-10)
    smoking, smokers = contributions["smoking"], baseline.current_smoker
    np.testing.assert_allclose(smoking[~smokers], 0, atol=1e-12)  # at the reference value: nothing
    assert smoking[smokers].std() > 0.01  # the PCE's smoking x age and sex terms: it depends on them
