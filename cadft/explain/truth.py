"""The synthetic cohort's truth per part of a record: each participant's true contribution of each risk factor to the
log-hazard (the oracle file's true:<factor> columns, cadft/synth/contributions.py), assigned to the part of the record
that shows that factor. A factor is shown by the feature of its name (true:systolic_bp by systolic_bp) or by the
history item RECORD_ITEM names (angina by history:diagnoses); a part showing several factors gets their sum, and a
factor no part shows (the latent polygenic score, a feature left out of the text) is not compared."""

from __future__ import annotations

import polars as pl

from cadft.config.schema import Config
from cadft.eval.baselines.oracle import oracle_contributions, oracle_path_for
from cadft.synth.contributions import COLUMN_PREFIX, RECORD_ITEM


def true_contributions(config: Config, eids: list[int], parts: list[str]) -> tuple[pl.DataFrame | None, str]:
    """(eid, feature, contribution for the participants and parts the truth covers, or None; a line saying which
    factors were compared, or why there is no truth)."""
    oracle_path = oracle_path_for(config)
    if oracle_path is None:
        return None, "no true contributions: not a synthetic cohort with an oracle for this task"
    wide = oracle_contributions(oracle_path)
    if wide is None:
        return None, (
            f"no true contributions: the oracle file {oracle_path} was written before cadft synth wrote them; "
            "write the cohort again with cadft synth"
        )
    long = wide.filter(pl.col("eid").is_in(eids)).unpivot(
        index="eid", variable_name="factor", value_name="contribution"
    )
    factor = pl.col("factor").str.strip_prefix(COLUMN_PREFIX)
    shown = long.with_columns(factor.replace(RECORD_ITEM).alias("feature"), factor.alias("factor"))
    compared = shown.filter(pl.col("feature").is_in(parts))
    if compared.height == 0:
        return None, "no true contributions: no part of the record shows a simulated risk factor"
    factors = sorted(compared["factor"].unique().to_list())
    unshown = sorted(set(shown["factor"].unique().to_list()) - set(factors))
    truth = compared.group_by("eid", "feature", maintain_order=True).agg(pl.col("contribution").sum())
    note = f"compared with the true log-hazard contributions of {', '.join(factors)}"
    if unshown:
        note += f"; not shown by the explained parts of the record: {', '.join(unshown)}"
    return truth, note
