"""The oracle (synthetic cohorts): the simulator's true risk per person, the ceiling any model can reach; read from the
file cadft synth writes beside the extract, never recalibrated. The same file holds each person's true contribution of
each risk factor to their log-hazard (cadft/synth/contributions.py), which explanations are checked against.

A stale oracle (from another cohort: `make demo` writes one where the default data.oracle_path points) or one for
another task would only fail, or mislead, in the report at the end of a run: `check_oracle` refuses it before any
work (cadft train: before the run folder exists, cadft.cli.hydra_callbacks.CheckOracle). Every validation and test
participant needs a risk, and the file's simulated outcome (`incident`, when it has one) must be the prepared label.
"""

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


OUTCOME = "incident"  # the simulated outcome cadft synth writes beside the risk


def oracle_scores(table: pl.DataFrame, oracle_path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(validation, test) frames whose prob is the synthetic cohort's true risk (the `cadft-synth` oracle file)."""
    scored = _scored_splits(table, Path(oracle_path))
    validation, test = (score_frame(rows, rows["risk"].to_numpy()) for rows in scored.values())
    return validation, test


def check_oracle(config: Config, table: pl.DataFrame) -> None:
    """Refuse, before any work, an oracle that cannot score this prepared table: eids missing, or a simulated outcome
    that is not the table's label (another cohort, or another task than data.oracle_task says)."""
    path = oracle_path_for(config)
    if path is None:
        return
    for name, rows in _scored_splits(table, Path(path)).items():
        if OUTCOME not in rows.columns:
            continue
        differ = int((rows[OUTCOME] != rows["label"]).sum())
        if differ:
            raise CadftError(
                f"oracle file {path}: its simulated outcome differs from the label of task {config.task.name} for "
                f"{differ} of {rows.height} {name} participants: it belongs to another cohort, or predicts another "
                f"task than data.oracle_task={config.data.oracle_task} says; {_FIX}"
            )


_FIX = "pass the oracle of this extract as data.oracle_path=FILE, or data.oracle_path=null for none"


def _scored_splits(table: pl.DataFrame, path: Path) -> dict[str, pl.DataFrame]:
    """validation and test rows of the table with the oracle's risk (and its outcome, when the file has one)."""
    if not path.is_file():
        raise CadftError(f"oracle file {path}: no such file")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    columns = pl.read_parquet_schema(path).names() if parquet else pl.read_csv(path, n_rows=0).columns
    if not {"eid", "risk"} <= set(columns):
        raise CadftError(
            f"oracle file {path} has columns {', '.join(columns)}; expected eid and risk (written by cadft-synth)"
        )
    wanted = ["eid", "risk", *[OUTCOME] * (OUTCOME in columns)]
    oracle = pl.read_parquet(path, columns=wanted) if parquet else pl.read_csv(path, columns=wanted)
    oracle = oracle.with_columns(pl.col("eid").cast(pl.Int64), pl.col("risk").cast(pl.Float64))
    if OUTCOME in oracle.columns:
        oracle = oracle.with_columns(pl.col(OUTCOME).cast(pl.Int64))
    if oracle["eid"].n_unique() != oracle.height:
        raise CadftError(f"oracle file {path} lists some eids more than once")
    splits = splits_of(table)
    scored = {}
    for name in ("validation", "test"):
        rows = splits[name].join(oracle, on="eid", how="left")
        unscored = rows["risk"].null_count()
        if unscored:
            raise CadftError(
                f"oracle file {path} has no risk for {unscored} of {rows.height} {name} participants: it is another "
                "cohort's, or the task is not an incident one (the oracle is the incident risk of people free of CAD "
                f"at baseline); {_FIX}"
            )
        scored[name] = rows
    return scored


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
