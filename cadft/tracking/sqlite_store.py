"""A local SQLite tracking store shared by processes that start together: created and migrated once, under a lock,
and its writes retried when another process holds the database.

MLflow 3.17 creates and migrates a new SQLite store (its tables, then ~100 alembic revisions) in whichever process
opens it first, with no lock between processes: two `cadft train` started together on a new database (the default
outputs/mlflow.db on first use included) both migrate, and the loser dies inside alembic (`table _alembic_tmp_*
already exists`, `Online migration expected to match one row`), sometimes leaving the database broken for good.
`client_for` takes an exclusive flock on `<db>.lock` beside the database while MLflow builds its store, so the first
process migrates and the others then find it current (a migrated store opens in ~0.1 s). flock works on local
filesystems; SQLite itself is not safe on network ones. MLflow's store import (1-2.5 s) is done before the lock.

Writers. MLflow waits 20 s for a locked database (its session's busy_timeout) and then fails without retrying;
`retry_if_locked` tries again, a bounded number of times (safe: SQLite rolled the failed transaction back).
A full disk or a read-only database is one CadftError naming the database and the errno (`store_failure`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cadft.errors import CadftError
from cadft.files import failures_as_errors

LOCK_SUFFIX = ".lock"
RETRIES = 3  # tries of a write that found the database locked (each after MLflow's own 20 s wait)
RETRY_BACKOFF_S = 1.0  # then 2 s
# SQLite's messages for what the user fixes on the machine -> the errno they mean
STORE_FAILURES = {
    "database or disk is full": errno.ENOSPC,
    "attempt to write a readonly database": errno.EACCES,
    "unable to open database file": errno.EACCES,
    "disk i/o error": errno.EIO,
}


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (a query string such as ?timeout=30 dropped); None otherwise."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()


@contextlib.contextmanager
def store_lock(db: Path) -> Iterator[None]:
    """An exclusive flock on `<db>.lock`, held until the block ends (blocking: the others wait without CPU)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{db}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


_prepared: set[Path] = set()  # stores this process has opened (MLflow caches the store per URI in a process)


def client_for(uri: str):
    """An MlflowClient for `uri`; a local SQLite store is created and migrated first, once, under the lock."""
    from mlflow import MlflowClient

    db = sqlite_path(uri)
    if db is None or db in _prepared:
        return MlflowClient(uri)
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  the slow import, outside the lock

    with store_lock(db), store_failure(uri):
        try:
            client = MlflowClient(uri)  # builds the store: tables + migration on a new database, a check otherwise
            client.search_experiments(max_results=1)
        except Exception as err:
            stray = _stray_migration_tables(db)
            if stray and _failure(err, uri) is None:  # a full disk stops a migration too: that is the news
                raise CadftError(
                    f"tracking store {db}: an interrupted MLflow schema migration left {', '.join(stray)} and the "
                    "store no longer opens; restore a backup, or move it aside to start a new one"
                ) from None
            raise
    _prepared.add(db)
    return client


def get_or_create_experiment(client, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created on first use; a process that created it at the same moment wins."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as err:
        experiment = client.get_experiment_by_name(name)
        if err.error_code != "RESOURCE_ALREADY_EXISTS" or experiment is None:
            raise
        return experiment.experiment_id


def retry_if_locked(action: Callable[[], Any], uri: str) -> Any:
    """action() against the store at `uri`, tried again (RETRIES in all) when a local database was locked by another
    writer for longer than MLflow waits."""
    from mlflow.exceptions import MlflowException

    for attempt in range(RETRIES):
        try:
            with store_failure(uri):
                return action()
        except MlflowException as err:
            locked = sqlite_path(uri) is not None and "database is locked" in str(err)
            if not locked or attempt == RETRIES - 1:
                raise
            time.sleep(RETRY_BACKOFF_S * 2**attempt)
    return None  # unreachable: the last attempt returns or raises


def store_failure(uri: str) -> contextlib.AbstractContextManager[None]:
    """A local store that cannot be written (a full disk, a read-only file) as one CadftError naming it."""
    return failures_as_errors(lambda err: _failure(err, uri))


def _failure(err: Exception, uri: str) -> CadftError | None:
    db = sqlite_path(uri)
    message = str(err).lower()
    text = next((text for text in STORE_FAILURES if text in message), None)
    if db is None or text is None:
        return None
    code = STORE_FAILURES[text]
    fix = "free space there" if code == errno.ENOSPC else "make it writable"
    return CadftError(
        f"tracking store {db}: {os.strerror(code)} ({errno.errorcode[code]}; SQLite: {text}); {fix}, or move the "
        "store (paths.output_dir, tracking.uri)"
    )


def _stray_migration_tables(db: Path) -> list[str]:
    """Alembic's batch-copy tables, left by a migration that stopped halfway."""
    if not db.is_file():
        return []
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
        rows = connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '\\_alembic\\_tmp\\_%' ESCAPE '\\'"
        )
        return [row[0] for row in rows]
