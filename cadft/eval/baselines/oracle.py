"""The oracle (synthetic cohorts): the simulator's true risk per person, the ceiling any model can reach; read from the
file cadft synth writes beside the extract, never recalibrated. The same file holds each person's true contribution of
each risk factor to their log-hazard (cadft/synth/contributions.py), which explanations are checked against."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cadft.config.schema import Config
from cadft.errors import CadftError
from cadft.eval.baselines.common import score_frame, splits_of


def oracle_path_for(config: Config) -> str | None:
    """The synthetic cohort's oracle file, when it exists and predicts this task's label (incident hard CAD for
    cadft synth); None otherwise."""
    path = config.data.oracle_path
    if not path or not Path(path).is_file() or config.data.oracle_task != config.task.name:
        return None
    return path


def oracle_scores(table: pl.DataFrame, oracle_path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(validation, test) frames whose prob is the synthetic cohort's true risk (the `cadft-synth` oracle file)."""
    path = Path(oracle_path)
    if not path.is_file():
        raise CadftError(f"oracle file {path}: no such file")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    columns = pl.read_parquet_schema(path).names() if parquet else pl.read_csv(path, n_rows=0).columns
    if not {"eid", "risk"} <= set(columns):
        raise CadftError(
            f"oracle file {path} has columns {', '.join(columns)}; expected eid and risk (written by cadft-synth)"
        )
    oracle = pl.read_parquet(path, columns=["eid", "risk"]) if parquet else pl.read_csv(path, columns=["eid", "risk"])
    oracle = oracle.select(pl.col("eid").cast(pl.Int64), pl.col("risk").cast(pl.Float64))
    if oracle["eid"].n_unique() != oracle.height:
        raise CadftError(f"oracle file {path} lists some eids more than once")
    splits = splits_of(table)
    frames = []
    for name in ("validation", "test"):
        rows = splits[name].join(oracle, on="eid", how="left")
        unscored = rows["risk"].null_count()
        if unscored:
            raise CadftError(
                f"oracle file {path} has no risk for {unscored} of {rows.height} {name} participants; the "
                "oracle is the "
                "incident risk of people free of CAD at baseline, so it only applies to incident tasks of "
                "the same cohort"
            )
        frames.append(score_frame(rows, rows["risk"].to_numpy()))
    return frames[0], frames[1]


def oracle_contributions(oracle_path) -> pl.DataFrame | None:
    """eid and the true contribution of each risk factor (`true:<factor>` columns) of the participants free of CAD at
    baseline; None for an oracle file written before cadft synth wrote them."""
    from cadft.synth.contributions import COLUMN_PREFIX

    path = Path(oracle_path)
    parquet = path.suffix.lower() in (".parquet", ".pq")
    columns = pl.read_parquet_schema(path).names() if parquet else pl.read_csv(path, n_rows=0).columns
    wanted = ["eid", *(c for c in columns if c.startswith(COLUMN_PREFIX))]
    if len(wanted) == 1:
        return None
    oracle = pl.read_parquet(path, columns=wanted) if parquet else pl.read_csv(path, columns=wanted)
    return oracle.select(pl.col("eid").cast(pl.Int64), pl.exclude("eid").cast(pl.Float64)).drop_nulls()
