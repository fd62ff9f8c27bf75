"""Where runs go (`tracking` group): the tracking store's URI, a check that it answers before training starts, the
experiment, and MLflow's HTTP retries bounded to seconds.

By default runs go to a SQLite store and an artifact folder under `paths.output_dir` (`sqlite:///<abs>/mlflow.db`,
`<abs>/mlartifacts`); `tracking.uri=http://127.0.0.1:5000` logs to a running `mlflow server`. One experiment per task.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from cadft.config.schema import Paths, Tracking
from cadft.errors import CadftError
from cadft.files import check_writable

OFFLINE_STORE = "mlflow_offline.db"  # in the run dir: the run, from the moment its server stopped answering
OFFLINE_ARTIFACTS = "mlflow_offline"  # in the run dir: that store's artifacts
# MLflow 3.17 retries a failed request 7 times with backoff factor 2 and a 120 s timeout: ~4 minutes per call
# against a server that is gone. cadft's: 3 tries, 0 + 2 s backoff (+ up to 1 s jitter each), 10 s per try.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def tracking_uri(tracking: Tracking, paths: Paths) -> str:
    if tracking.uri:
        return tracking.uri
    return f"sqlite:///{Path(paths.output_dir).resolve() / 'mlflow.db'}"


def default_tracking_uri() -> str:
    """The store cadft train logs to without overrides (for tools outside a run: the leaderboard, the UI)."""
    from cadft.config.compose import compose
    from cadft.config.validate import validate_group

    cfg = compose("config")
    return tracking_uri(validate_group(cfg, "tracking"), validate_group(cfg, "paths"))


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def offline_uri(run_dir: Path) -> str:
    return f"sqlite:///{run_dir.resolve() / OFFLINE_STORE}"


def preflight(tracking: Tracking, paths: Paths) -> None:
    """Fail before training when the tracking store cannot be reached or written."""
    if not tracking.enabled:
        return
    uri = tracking_uri(tracking, paths)
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError) as err:
            raise CadftError(
                f"tracking.uri={uri} does not answer ({getattr(err, 'reason', err)}); start the server or fix the URI"
            ) from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        check_writable(folder, "tracking store (paths.output_dir)")
        from cadft.train.distributed import is_main_process

        if is_main_process():  # a new store is created and migrated now, once, before the work it would lose
            from cadft.tracking.sqlite_store import client_for

            client_for(uri)


def bound_http_retries() -> None:
    """MLflow's HTTP retries bounded to seconds for this process, where the user has not set them."""
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)


def experiment_for(tracking: Tracking, paths: Paths) -> str:
    """The id of the config's experiment (tracking.experiment), created on first use with its artifact location (by
    whichever of several processes started together gets there first)."""
    import mlflow

    from cadft.tracking.sqlite_store import client_for, get_or_create_experiment, retry_if_locked

    bound_http_retries()
    uri = tracking_uri(tracking, paths)
    client = client_for(uri)  # a new local store is created once, under a lock
    mlflow.set_tracking_uri(uri)
    location = tracking.artifact_location
    if location is None and not is_remote(uri):
        location = (Path(paths.output_dir).resolve() / "mlartifacts").as_uri()
    return retry_if_locked(lambda: get_or_create_experiment(client, tracking.experiment, location), uri)


def unreachable(err: Exception, uri: str) -> bool:
    """A tracking server that does not answer (connection refused, timeout, 5xx after the retries); a request it
    refused (4xx) and any failure of a local store are errors to raise."""
    if not is_remote(uri):
        return False
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        return err.get_http_status_code() >= 500
    return isinstance(err, (requests.RequestException, OSError))


def may_log_eids(tracking: Tracking, paths: Paths) -> bool:
    """Per-participant files go to a local store by default, to a server only when asked."""
    setting = tracking.log_eids
    return (not is_remote(tracking_uri(tracking, paths))) if setting == "auto" else bool(setting)
