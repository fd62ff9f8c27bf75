"""The MLflow run this process logs to, and only from rank 0: opened once per job, written through one place that
goes offline when the tracking server stops answering.

Faults. A server that stops answering does not stop the run. MLflow's HTTP retries are bounded to seconds
(cadft.tracking.store.HTTP_LIMITS, unless the MLFLOW_HTTP_REQUEST_* variables are set); then the run goes on in a
local store in the run dir (`mlflow_offline.db`, artifacts in `mlflow_offline/`), noted in the run record under
"offline", and `cadft sync RUN_DIR` (cadft.tracking.sync) replays it into the server later. A server that refuses a
request (a 4xx answer) is an error as before, and so is any failure of a local store. A run ends FINISHED, FAILED (an
exception) or KILLED (Ctrl-C, SIGTERM, SIGINT: cadft.cli.common.stop_on_signals), never RUNNING (`closing_run`; the
signals are held back while the final status is written), on the server once synced. A local SQLite store is created
once under a lock, and writes that find it locked by another process are retried (cadft.tracking.sqlite_store).
Nothing identifying is logged as a param, tag or metric: the config holds no eids or record text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadft.config.schema import Paths, Tracking
from cadft.tracking.names import RESUMED_WITH_TAG
from cadft.tracking.record import read_record, update_record
from cadft.tracking.sqlite_store import client_for, get_or_create_experiment, retry_if_locked, store_failure
from cadft.tracking.store import (
    OFFLINE_ARTIFACTS,
    OFFLINE_STORE,
    bound_http_retries,
    experiment_for,
    offline_uri,
    tracking_uri,
    unreachable,
)
from cadft.train.distributed import is_main_process

log = logging.getLogger(__name__)


@dataclass
class _Session:
    """The run this process logs to, and where: the configured store, or the run dir's offline store."""

    client: Any  # MlflowClient
    run_id: str | None
    run_dir: Path
    experiment: str
    run_name: str
    offline: bool = False
    params: dict[str, str] = field(default_factory=dict)  # logged so far: an offline run starts with them
    tags: dict[str, str] = field(default_factory=dict)


_session: _Session | None = None


def start_run(
    tracking: Tracking,
    paths: Paths,
    run_dir: Path,
    tags: dict[str, str],
    *,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    resume: bool = True,
) -> str | None:
    """Open (or, on resume, reopen) this job's MLflow run, a child of `parent_run_id` when given (a sweep job, an
    evaluation); returns its id (None when tracking is off). resume=False: always a new run, whatever run_dir's record
    says. Every run is tagged with the git commit of the code that made it."""
    global _session
    if not tracking.enabled or not is_main_process():
        return None
    from mlflow.entities import RunTag
    from mlflow.tracking.context.registry import resolve_tags

    uri = tracking_uri(tracking, paths)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = read_record(run_dir).get("run_id") if resume else None
    tags = {k: _short(v) for k, v in (tags | {"git_commit": git_commit()}).items()}
    name = run_name or tracking.run_name or run_dir.name
    experiment_id, _session = None, None
    try:
        _session = _Session(client_for(uri), previous, run_dir, tracking.experiment, name, tags=dict(tags))
        client = _session.client
        experiment_id = experiment_for(tracking, paths)
        if previous:
            retry_if_locked(lambda: client.update_run(previous, status="RUNNING"), uri)
            retry_if_locked(lambda: client.log_batch(previous, tags=[RunTag(k, v) for k, v in tags.items()]), uri)
        else:
            extra = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
            run = retry_if_locked(
                lambda: client.create_run(
                    experiment_id, run_name=name, tags=resolve_tags(tags | extra | {"mlflow.runName": name})
                ),
                uri,
            )
            _session.run_id = run.info.run_id
    except Exception as err:
        if _session is None or not unreachable(err, uri):  # None: a local store that cannot be opened
            _session = None
            raise
        _go_offline(err)
    server_run_id = previous if _session.offline else _session.run_id  # None: the server has not seen the run
    known = {"experiment_id": experiment_id} if experiment_id else {}
    update_record(run_dir, run_id=server_run_id, experiment=_session.experiment, tracking_uri=uri, **known)
    return _session.run_id


def reopen_run(run_dir: Path, *, mark_running: bool = True) -> bool:
    """Make the MLflow run recorded in run_dir the one logged to (a failed sweep job; `cadft eval --finish`, which
    leaves its status as it was: mark_running=False and `leave_run`); False when there is none."""
    global _session
    record = read_record(run_dir)
    if not record or not is_main_process():
        return False
    bound_http_retries()
    uri = record["tracking_uri"]
    _session = _Session(
        client_for(uri), record.get("run_id"), run_dir, record.get("experiment", "Default"), run_dir.name
    )
    if _session.run_id is None:  # the server never saw the run: it lives offline
        _go_offline(RuntimeError("the run was recorded offline from its start"))
        return True
    try:
        run = _session.client.get_run(_session.run_id)
        _session.run_name = run.info.run_name
        if mark_running:
            _session.client.update_run(_session.run_id, status="RUNNING")
    except Exception as err:
        if not unreachable(err, uri):
            _session = None
            raise
        _go_offline(err)
    return True


def _go_offline(err: Exception) -> None:
    """Go on in the run dir's offline store: the unsynced offline run of an earlier process of this run, or a new
    one that starts with the params and tags logged so far."""
    from mlflow.entities import Param, RunTag

    session = _session
    log.warning(
        "the MLflow tracking server does not answer (%s): the run goes on in %s; send it to the server later "
        "with: cadft sync %s",
        str(err).splitlines()[0][:300],
        session.run_dir / OFFLINE_STORE,
        session.run_dir,
    )
    client = client_for(offline_uri(session.run_dir))
    offline = read_record(session.run_dir).get("offline") or {}
    if offline.get("run_id") and not offline.get("synced"):
        run_id = offline["run_id"]
        client.update_run(run_id, status="RUNNING")
    else:
        experiment_id = get_or_create_experiment(
            client, session.experiment, (session.run_dir.resolve() / OFFLINE_ARTIFACTS).as_uri()
        )
        run_id = client.create_run(
            experiment_id, run_name=session.run_name, tags={"mlflow.runName": session.run_name}
        ).info.run_id
    logged = client.get_run(run_id).data.params
    client.log_batch(
        run_id,
        params=[Param(k, v) for k, v in session.params.items() if k not in logged],
        tags=[RunTag(k, v) for k, v in session.tags.items()],
    )
    update_record(
        session.run_dir,
        offline={
            "store": OFFLINE_STORE,
            "run_id": run_id,
            "synced": False,
            "server_run_id": session.run_id,
            "reason": str(err).splitlines()[0][:300],
        },
    )
    session.client, session.run_id, session.offline = client, run_id, True


def _logged(action: Callable[[Any, str], Any]) -> Any:
    """action(client, run_id) on the open run, if any; on the offline store once the server stops answering.
    Only rank 0 opens a run; with tracking.enabled=false none is, and mlflow is never imported."""
    if _session is None:
        return None
    session = _session
    if not session.offline:
        try:
            return retry_if_locked(lambda: action(session.client, session.run_id), session.client.tracking_uri)
        except Exception as err:
            if not unreachable(err, session.client.tracking_uri):
                raise
            _go_offline(err)
    with store_failure(session.client.tracking_uri):
        return action(session.client, session.run_id)


def is_active() -> bool:
    """Whether this process (rank 0) has an open MLflow run to log to."""
    return _session is not None


def log_with(action: Callable[[Any, str], Any]) -> Any:
    """action(client, run_id) on the open run (the offline store once the server stops answering), e.g. logging an
    MLflow model; its result, or None without a run."""
    return _logged(action)


def end_run(status: str = "FINISHED") -> None:
    """End the open run with `status`; a stop signal that comes meanwhile waits until it is written (never RUNNING)."""
    global _session
    held = _hold_signals()
    try:
        _logged(lambda client, run_id: client.set_terminated(run_id, status))
    finally:
        _session = None
        if held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def leave_run() -> None:
    """Stop logging to the open run, leaving its status as it is (`cadft eval --finish` on an ended run)."""
    global _session
    _session = None


@contextlib.contextmanager
def closing_run() -> Iterator[None]:
    """End the open run (if any) when the block ends: FINISHED, KILLED on a stop (Ctrl-C, SIGTERM), FAILED on an
    error."""
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        end_run(status)


def _hold_signals() -> set[signal.Signals]:
    """Block SIGTERM and SIGINT in this thread (their handlers run once unblocked); the set blocked."""
    stops = {signal.SIGTERM, signal.SIGINT}
    try:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    except (AttributeError, OSError):  # no pthread_sigmask on this platform
        return set()
    return stops - set(blocked)


def log_params(params: dict) -> None:
    """Log params; on a resumed run (params already there) new keys are added and changed values, which
    MLflow refuses to overwrite, are recorded in the tag `cadft.resumed_with`."""
    if _session is None:
        return
    from mlflow.entities import Param, RunTag

    values = {k: _short(v) for k, v in params.items()}

    def log_new(client, run_id):
        logged = client.get_run(run_id).data.params
        changed = {k: v for k, v in values.items() if k in logged and logged[k] != v}
        tags = [RunTag(RESUMED_WITH_TAG, _short(changed))] if changed else []
        client.log_batch(run_id, params=[Param(k, v) for k, v in values.items() if k not in logged], tags=tags)

    _logged(log_new)
    _session.params |= {k: v for k, v in values.items() if k not in _session.params}


def set_tags(tags: dict[str, str]) -> None:
    if _session is None:
        return
    from mlflow.entities import RunTag

    values = {k: _short(v) for k, v in tags.items()}
    _logged(lambda client, run_id: client.log_batch(run_id, tags=[RunTag(k, v) for k, v in values.items()]))
    _session.tags |= values


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not numeric or _session is None:
        return
    from mlflow.entities import Metric
    from mlflow.utils.time import get_current_time_millis

    now = get_current_time_millis()
    batch = [Metric(k, v, now, step or 0) for k, v in numeric.items()]
    _logged(lambda client, run_id: client.log_batch(run_id, metrics=batch))


def log_artifacts(paths: list[Path], artifact_path: str | None = None) -> None:
    def upload(client, run_id):
        for path in paths:
            if path.is_dir():
                client.log_artifacts(
                    run_id, str(path), artifact_path=f"{artifact_path}/{path.name}" if artifact_path else path.name
                )
            elif path.is_file():
                client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    _logged(upload)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
