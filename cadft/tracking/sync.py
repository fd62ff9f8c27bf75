"""Sending a run recorded offline to its MLflow tracking server (cadft sync).

    cadft sync RUN_DIR [--tracking-uri URI] [--killed]

When the tracking server stops answering, cadft train goes on logging to <run dir>/mlflow_offline.db
(cadft.tracking.session). Once the server is back and the run has ended, this replays that local run into the
server: the params the server run lacks, the tags, every metric value with its step and time, the artifacts and
the final status. It goes into the server's run of this run dir (mlflow_run.json), or into a new run of the same
experiment when the server never saw the run (or no longer has it). The record is then marked synced: a second
sync does nothing. Only what the run logged is sent, so the run's privacy rules hold (README, Privacy).

A run whose process was killed outright (SIGKILL, out of memory) is left RUNNING offline: --killed sends it as
KILLED. A sync that stops halfway (the server went away again) can be rerun; metric values it had sent are then
sent twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cadft.errors import CadftError
from cadft.layout import RUN_RECORD
from cadft.tracking.record import read_record, update_record
from cadft.tracking.sqlite_store import client_for
from cadft.tracking.store import bound_http_retries, offline_uri

log = logging.getLogger(__name__)


def sync(run_dir: Path, tracking_uri: str | None = None, *, killed: bool = False) -> dict | None:
    """Replay run_dir's offline run into the server; what was sent, or None when it was synced already."""
    record = read_record(run_dir)
    offline = record.get("offline")
    if not offline:
        raise CadftError(f"{run_dir}: nothing recorded offline here (no 'offline' entry in {run_dir / RUN_RECORD})")
    if offline.get("synced"):
        return None
    from mlflow.entities import Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.utils.file_utils import local_file_uri_to_path

    bound_http_retries()
    uri = tracking_uri or record["tracking_uri"]
    local = client_for(offline_uri(run_dir))
    run = local.get_run(offline["run_id"])
    status = run.info.status
    if status == "RUNNING":
        if not killed:
            raise CadftError(
                f"{run_dir}: the offline run is still RUNNING: sync once its training has ended; a process killed "
                "outright (SIGKILL, out of memory) never closes it: pass --killed to send it as KILLED"
            )
        status = "KILLED"
    server = client_for(uri)
    try:
        target = _server_run(server, offline.get("server_run_id") or record.get("run_id"))
        new_run = target is None
        if new_run:
            name = local.get_experiment(run.info.experiment_id).name
            experiment = server.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else server.create_experiment(name)
            target = server.create_run(
                experiment_id, start_time=run.info.start_time, run_name=run.info.run_name, tags=run.data.tags
            ).info.run_id
        have = server.get_run(target).data.params
        params = [Param(k, v) for k, v in run.data.params.items() if k not in have]
        tags = [RunTag(k, v) for k, v in run.data.tags.items() if not k.startswith("mlflow.")]
        metrics = [m for key in run.data.metrics for m in local.get_metric_history(run.info.run_id, key)]
        server.log_batch(target, metrics=metrics, params=params, tags=tags)
        artifacts = Path(local_file_uri_to_path(run.info.artifact_uri))
        files = [p for p in artifacts.rglob("*") if p.is_file()] if artifacts.is_dir() else []
        if files:
            server.log_artifacts(target, str(artifacts))
        server.set_terminated(target, status, end_time=run.info.end_time)
    except MlflowException as err:
        if err.get_http_status_code() < 500:
            raise
        raise CadftError(
            f"the tracking server {uri} does not answer ({str(err).splitlines()[0][:200]}); "
            "start it, or pass --tracking-uri URI"
        ) from None
    update_record(
        run_dir,
        run_id=target,
        tracking_uri=uri,
        offline=offline | {"synced": True, "server_run_id": target, "synced_to": uri},
    )
    return {
        "run_id": target,
        "new_run": new_run,
        "params": len(params),
        "metric_values": len(metrics),
        "artifacts": len(files),
        "status": status,
    }


def _server_run(server, run_id: str | None) -> str | None:
    """run_id when the server has that run; None when it never saw the run or no longer has it."""
    from mlflow.exceptions import MlflowException

    if run_id is None:
        return None
    try:
        server.get_run(run_id)
        return run_id
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        log.warning("the server has no run %s any more: sending the offline run as a new run", run_id)
        return None
