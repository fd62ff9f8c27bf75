"""A synthetic cohort's oracle that does not belong to the prepared data (another cohort's, or for another task) is
refused before any work: by cadft train before its run folder exists (cadft.cli.hydra_callbacks.CheckOracle), where
it used to fail in the report after the whole training."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest

from cadft.data.prepare import prepare
from cadft.errors import CadftError
from cadft.eval.baselines.oracle import check_oracle
from tests.conftest import CADFT, TINY_TRAINING


def _oracle_without_some_eids(oracle: Path, table: pl.DataFrame, out: Path) -> Path:
    """The oracle less five validation participants: what a file from another cohort looks like."""
    missing = table.filter(pl.col("split") == "validation")["eid"].head(5)
    pl.read_csv(oracle).filter(~pl.col("eid").is_in(missing.implode())).write_csv(out)
    return out


def test_an_oracle_of_another_cohort_or_task_is_refused(train_config, synthetic_cohort, tmp_path):
    oracle = synthetic_cohort[1]
    config = train_config()
    table = prepare(config).table()
    check_oracle(config, table)  # the cohort's own oracle

    stale = _oracle_without_some_eids(oracle, table, tmp_path / "stale.csv")
    with pytest.raises(CadftError, match=r"has no risk for 5 of \d+ validation participants: it is another cohort's"):
        check_oracle(train_config(f"data.oracle_path={stale}"), table)

    test_eids = table.filter((pl.col("split") == "test") & (pl.col("label") == 0))["eid"].head(3).implode()
    flipped = tmp_path / "flipped.csv"  # the same eids, another outcome: another cohort, or another task's labels
    pl.read_csv(oracle).with_columns(
        pl.when(pl.col("eid").is_in(test_eids)).then(1).otherwise(pl.col("incident")).alias("incident")
    ).write_csv(flipped)
    with pytest.raises(CadftError, match=r"differs from the label of task hard_cad_incident10 for 3 of \d+ test"):
        check_oracle(train_config(f"data.oracle_path={flipped}"), table)


@pytest.mark.slow
def test_train_refuses_a_stale_oracle_before_its_run_folder_exists(
    train_config, synthetic_cohort, prepared_dir, tmp_path
):
    extract, oracle = synthetic_cohort
    table = prepare(train_config()).table()
    stale = _oracle_without_some_eids(oracle, table, tmp_path / "stale.csv")
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [
            *CADFT,
            "train",
            "backbone=tiny",
            f"data.path={extract}",
            f"data.oracle_path={stale}",
            f"paths.output_dir={tmp_path / 'outputs'}",
            f"paths.prepared_dir={prepared_dir}",
            f"hydra.run.dir={run_dir}",
            *TINY_TRAINING,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().startswith(f"cadft train: error: oracle file {stale} has no risk for 5 of ")
    assert len(done.stderr.strip().splitlines()) == 1 and not run_dir.exists()
