"""A local SQLite tracking store shared by processes that start together (cadft.tracking.sqlite_store): created and
migrated once under a lock, experiments created once, writes retried when locked, a full or read-only store one line.
(Real trainings started together on a new default store: tests/cli/test_stops.py.)"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from cadft.errors import CadftError
from cadft.tracking.sqlite_store import client_for, retry_if_locked, sqlite_path, store_failure
from tests.conftest import REPO

# One process of what every cadft command does with its store: open it, create-or-read the experiment, log a run.
OPEN_AND_LOG = """
import sys
from pathlib import Path
from cadft.config.schema import Paths, Tracking
from cadft.tracking import session

uri, run_dir = sys.argv[1], Path(sys.argv[2])
tracking = Tracking(uri=uri, experiment="race", artifact_location=None, run_name=None, log_model="none",
                    register_model=None, log_eids="auto", enabled=True)
paths = Paths(output_dir=str(run_dir.parent), prepared_dir=str(run_dir.parent), cache_dir=str(run_dir.parent))
session.start_run(tracking, paths, run_dir, {"kind": "llm"})
with session.closing_run():
    session.log_params({"seed": 1})
    session.log_metrics({"val/auroc": 0.5})
"""


@pytest.mark.slow
def test_processes_started_together_on_a_new_store_all_record_their_runs(tmp_path):
    """The issue's case: tracking.uri=sqlite:///NEW.db, several processes at once (without the lock two of three
    died in MLflow's migration and the database could be left broken)."""
    uri = f"sqlite:///{tmp_path / 'new.db'}?timeout=30"  # a query string: the lock is still the database's
    env = os.environ | {"PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_LOG, uri, str(tmp_path / f"run{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'new.db'}")
    experiments = [e for e in client.search_experiments() if e.name == "race"]
    assert len(experiments) == 1
    runs = client.search_runs([experiments[0].experiment_id])
    assert len(runs) == 4 and {run.info.status for run in runs} == {"FINISHED"}
    assert all(run.data.metrics == {"val/auroc": 0.5} for run in runs)
    assert (tmp_path / "new.db.lock").is_file() and sqlite_path(uri) == (tmp_path / "new.db").resolve()


def test_a_store_broken_by_an_interrupted_migration_is_one_line(tmp_path):
    db = tmp_path / "broken.db"
    with sqlite3.connect(db) as connection:  # what an unlocked race left: alembic's batch copy, no schema
        connection.execute("CREATE TABLE _alembic_tmp_experiments (id INTEGER)")
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        connection.execute("INSERT INTO alembic_version VALUES ('4465047574b1')")
    with pytest.raises(CadftError, match=r"interrupted MLflow schema migration left _alembic_tmp_experiments"):
        client_for(f"sqlite:///{db}")


def test_a_full_or_read_only_store_is_one_line_naming_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for message, code in (("database or disk is full", "ENOSPC"), ("attempt to write a readonly database", "EACCES")):
        with pytest.raises(CadftError) as raised, store_failure(uri):
            raise MlflowException(f"(sqlite3.OperationalError) {message} [SQL: INSERT INTO metrics ...]")
        assert str(raised.value).startswith(f"tracking store {tmp_path / 'mlflow.db'}: ") and f"({code};" in str(
            raised.value
        )
    with pytest.raises(MlflowException), store_failure("http://127.0.0.1:9"):  # a server's answer is its own
        raise MlflowException("database or disk is full")


def test_a_locked_store_is_tried_again_a_bounded_number_of_times(tmp_path, monkeypatch):
    monkeypatch.setattr("cadft.tracking.sqlite_store.RETRY_BACKOFF_S", 0.0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            raise MlflowException("(sqlite3.OperationalError) database is locked", error_code="TEMPORARILY_UNAVAILABLE")
        return "logged"

    assert retry_if_locked(locked_twice, uri) == "logged" and len(calls) == 3
    calls.clear()

    def always_locked():
        calls.append(1)
        raise MlflowException("(sqlite3.OperationalError) database is locked", error_code="TEMPORARILY_UNAVAILABLE")

    with pytest.raises(MlflowException, match="database is locked"):
        retry_if_locked(always_locked, uri)  # gives up after RETRIES tries
    assert len(calls) == 3
