"""MLflow tracking (`tracking` group): where runs go, what is logged, and only from rank 0.

By default runs go to a SQLite store and an artifact folder under `paths.output_dir`
(`sqlite:///<abs>/mlflow.db`, `<abs>/mlartifacts`); `tracking.uri=http://127.0.0.1:5000` logs to a
running `mlflow server`, checked before training starts. One experiment per task, one run per job.
Nothing identifying is logged as a param, tag or metric: the config holds no eids or record text, and
per-participant predictions go up as an artifact only to a local store unless `tracking.log_eids=true`.

Faults. A server that stops answering does not stop the run. cadft bounds MLflow's HTTP retries to seconds
(HTTP_LIMITS, unless the MLFLOW_HTTP_REQUEST_* variables are set); then the run goes on in a local store in the
run dir (`mlflow_offline.db`, artifacts in `mlflow_offline/`), noted in `mlflow_run.json` under "offline", and
`cadft-sync RUN_DIR` (cadft/tracking_sync.py) replays it into the server later. A server that refuses a request
(a 4xx answer) is an error as before, and so is any failure of a local store. A run ends FINISHED, FAILED (an
exception) or KILLED (Ctrl-C, SIGTERM), never RUNNING (cadft/train.py), on the server once synced.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from cadft.errors import CadftError

log = logging.getLogger(__name__)
RUN_FILE = "mlflow_run.json"  # in the run dir: lets eval, resume and cadft-sync find the run
OFFLINE_STORE = "mlflow_offline.db"  # in the run dir: the run, from the moment its server stopped answering
OFFLINE_ARTIFACTS = "mlflow_offline"  # in the run dir: that store's artifacts
PARENT_ENV = "CADFT_MLFLOW_PARENT_RUN_ID"  # set by the sweep callback: jobs become child runs
SWEEP_TAGS_ENV = "CADFT_MLFLOW_SWEEP_TAGS"  # set by the sweep callback: the job's swept values, JSON tags
SWEEP_RUN_NAME_ENV = "CADFT_MLFLOW_SWEEP_RUN_NAME"  # set by the sweep callback: the job's swept values, as a run name
# MLflow names: every tag and metric key that cadft writes and other modules read, owned here.
KIND_TAG = "kind"  # llm (a training run) | baseline | oracle | sweep (a sweep's parent run)
KIND_LLM, KIND_BASELINE, KIND_ORACLE, KIND_SWEEP = "llm", "baseline", "oracle", "sweep"
RUN_TAGS = ("strategy", "head", "imbalance", "zero", "backbone")  # what a training run is (cadft.train.run_tags)
RUN_DIR_TAG = "cadft.run_dir"  # the run's local folder: cadft-eval finds the run through it
ERROR_TAG = "cadft.error"  # a failed sweep job's error
SWEPT_TAG = "cadft.swept."  # + key: a sweep job's value of a swept key (cadft.sweep)
SWEEP_TAG = "cadft.sweep."  # + config, swept, overrides, params, dir, job: a sweep's parent run and its jobs
MODEL_URI_TAG = "cadft.model_uri"  # a training run's logged pyfunc model (cadft.pyfunc), for cadft-eval and cadft-predict
RANK_METRIC = "validation/auroc"  # runs are ranked on validation (cadft-compare, the UI view), never on test
USAGE_METRICS = {"train_seconds": "train/seconds", "peak_memory_gb": "train/peak_memory_gb"}
TRAINER_METRICS = {"loss": "train/loss_weighted", "loss_unweighted": "train/loss_unweighted", "learning_rate": "train/learning_rate",
                   "grad_norm": "train/grad_norm", "examples_per_second": "train/examples_per_second"}  # Trainer log key -> metric
COHORT_PARAM = "cohort/"  # + step (+ ".excluded"): the data card's cohort counts, as run params (cohort_params)
VALIDATION_DURING_TRAINING = "val/"  # + metric: validation during training (model selection); final metrics: validation/, test/
# MLflow 3.17 retries a failed request 7 times with backoff factor 2 and a 120 s timeout: ~4 minutes per call
# against a server that is gone. cadft's: 3 tries, 0 + 2 s backoff (+ up to 1 s jitter each), 10 s per try.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def tracking_uri(cfg: DictConfig) -> str:
    if cfg.tracking.uri:
        return str(cfg.tracking.uri)
    return f"sqlite:///{Path(cfg.paths.output_dir).resolve() / 'mlflow.db'}"


def default_tracking_uri() -> str:
    """The store cadft-train logs to without overrides (for tools outside a run: cadft-compare, the UI)."""
    from hydra import compose, initialize_config_dir

    from cadft.cli import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return tracking_uri(compose("config"))


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def preflight(cfg: DictConfig) -> None:
    """Fail before training when the tracking store cannot be reached or written."""
    if not cfg.tracking.enabled:
        return
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError) as err:
            raise CadftError(f"tracking.uri={uri} does not answer ({getattr(err, 'reason', err)}); start the server or fix the URI") from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        check_writable(folder, "tracking store (paths.output_dir)")


def check_writable(folder: Path, what: str, *, create: bool = True) -> None:
    """Fail with one clear line when `folder` cannot be written. create=False leaves no trace: it probes the
    nearest folder that exists (a path below a regular file fails there, even for root)."""
    folder = Path(folder)
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        target = folder if create else next(p for p in (folder, *folder.parents) if p.exists())
        if not target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target))
        probe = target / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise CadftError(f"{what} {folder} is not writable ({err.strerror})") from None


def bound_http_retries() -> None:
    """MLflow's HTTP retries bounded to seconds for this process, where the user has not set them."""
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)


def read_record(run_dir: Path) -> dict:
    path = run_dir / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def update_record(run_dir: Path, **fields) -> None:
    """Merge fields into the run dir's record; written whole or not at all."""
    path = run_dir / RUN_FILE
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(read_record(run_dir) | fields) + "\n")
    os.replace(temporary, path)


def offline_uri(run_dir: Path) -> str:
    return f"sqlite:///{run_dir.resolve() / OFFLINE_STORE}"


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


def start_run(cfg: DictConfig, run_dir: Path, tags: dict[str, str], run_name: str | None = None) -> str | None:
    """Open (or, on resume, reopen) this job's MLflow run; returns its id (None when tracking is off)."""
    global _session
    if not cfg.tracking.enabled or not is_main_process():
        return None
    from mlflow import MlflowClient
    from mlflow.entities import RunTag
    from mlflow.tracking.context.registry import resolve_tags

    uri = tracking_uri(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = read_record(run_dir).get("run_id")
    parent = os.environ.get(PARENT_ENV)
    tags = {k: _short(v) for k, v in (tags | json.loads(os.environ.get(SWEEP_TAGS_ENV, "{}"))).items()}
    name = run_name or cfg.tracking.run_name or os.environ.get(SWEEP_RUN_NAME_ENV) or run_dir.name
    _session = _Session(MlflowClient(uri), previous, run_dir, str(cfg.tracking.experiment), str(name), tags=dict(tags))
    experiment_id = None
    try:
        experiment_id = experiment_for(cfg)
        if previous:
            _session.client.update_run(previous, status="RUNNING")
            _session.client.log_batch(previous, tags=[RunTag(k, v) for k, v in tags.items()])
        else:
            extra = {"mlflow.parentRunId": parent} if parent else {}
            run = _session.client.create_run(experiment_id, run_name=name, tags=resolve_tags(tags | extra | {"mlflow.runName": name}))
            _session.run_id = run.info.run_id
    except Exception as err:
        if not _unreachable(err, uri):
            _session = None
            raise
        _go_offline(err)
    server_run_id = previous if _session.offline else _session.run_id  # None: the server has not seen the run
    known = {"experiment_id": experiment_id} if experiment_id else {}
    update_record(run_dir, run_id=server_run_id, experiment=_session.experiment, tracking_uri=uri, **known)
    return _session.run_id


def reopen_run(run_dir: Path) -> bool:
    """Make the MLflow run recorded in run_dir the one logged to (for cadft-eval); False when there is none."""
    global _session
    record = read_record(run_dir)
    if not record or not is_main_process():
        return False
    from mlflow import MlflowClient

    bound_http_retries()
    uri = record["tracking_uri"]
    _session = _Session(MlflowClient(uri), record.get("run_id"), run_dir, record.get("experiment", "Default"), run_dir.name)
    if _session.run_id is None:  # the server never saw the run: it lives offline
        _go_offline(RuntimeError("the run was recorded offline from its start"))
        return True
    try:
        run = _session.client.get_run(_session.run_id)
        _session.run_name = run.info.run_name
        _session.client.update_run(_session.run_id, status="RUNNING")
    except Exception as err:
        if not _unreachable(err, uri):
            _session = None
            raise
        _go_offline(err)
    return True


def experiment_for(cfg: DictConfig) -> str:
    """The id of the config's experiment (tracking.experiment), created on first use with its artifact location."""
    import mlflow

    bound_http_retries()
    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    name = str(cfg.tracking.experiment)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = cfg.tracking.artifact_location
    if location is None and not is_remote(uri):
        location = (Path(cfg.paths.output_dir).resolve() / "mlartifacts").as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def _unreachable(err: Exception, uri: str) -> bool:
    """A tracking server that does not answer (connection refused, timeout, 5xx after the retries); a request it
    refused (4xx) and any failure of a local store are errors to raise."""
    if not is_remote(uri):
        return False
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        return err.get_http_status_code() >= 500
    return isinstance(err, (requests.RequestException, OSError))


def _go_offline(err: Exception) -> None:
    """Go on in the run dir's offline store: the unsynced offline run of an earlier process of this run, or a new
    one that starts with the params and tags logged so far."""
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag

    session = _session
    log.warning("the MLflow tracking server does not answer (%s): the run goes on in %s; send it to the server later "
                "with: cadft-sync %s", str(err).splitlines()[0][:300], session.run_dir / OFFLINE_STORE, session.run_dir)
    client = MlflowClient(offline_uri(session.run_dir))
    offline = read_record(session.run_dir).get("offline") or {}
    if offline.get("run_id") and not offline.get("synced"):
        run_id = offline["run_id"]
        client.update_run(run_id, status="RUNNING")
    else:
        experiment = client.get_experiment_by_name(session.experiment)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(
            session.experiment, artifact_location=(session.run_dir.resolve() / OFFLINE_ARTIFACTS).as_uri())
        run_id = client.create_run(experiment_id, run_name=session.run_name, tags={"mlflow.runName": session.run_name}).info.run_id
    logged = client.get_run(run_id).data.params
    client.log_batch(run_id, params=[Param(k, v) for k, v in session.params.items() if k not in logged],
                     tags=[RunTag(k, v) for k, v in session.tags.items()])
    update_record(session.run_dir, offline={"store": OFFLINE_STORE, "run_id": run_id, "synced": False,
                                            "server_run_id": session.run_id, "reason": str(err).splitlines()[0][:300]})
    session.client, session.run_id, session.offline = client, run_id, True


def _logged(action: Callable[[Any, str], Any]) -> Any:
    """action(client, run_id) on the open run, if any; on the offline store once the server stops answering.
    Only rank 0 opens a run; with tracking.enabled=false none is, and mlflow is never imported."""
    if _session is None:
        return None
    if not _session.offline:
        try:
            return action(_session.client, _session.run_id)
        except Exception as err:
            if not _unreachable(err, _session.client.tracking_uri):
                raise
            _go_offline(err)
    return action(_session.client, _session.run_id)


def is_active() -> bool:
    """Whether this process (rank 0) has an open MLflow run to log to."""
    return _session is not None


def log_with(action: Callable[[Any, str], Any]) -> Any:
    """action(client, run_id) on the open run (the offline store once the server stops answering), e.g. logging an
    MLflow model; its result, or None without a run."""
    return _logged(action)


def end_run(status: str = "FINISHED") -> None:
    global _session
    try:
        _logged(lambda client, run_id: client.set_terminated(run_id, status))
    finally:
        _session = None


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
        tags = [RunTag("cadft.resumed_with", _short(changed))] if changed else []
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
                client.log_artifacts(run_id, str(path), artifact_path=f"{artifact_path}/{path.name}" if artifact_path else path.name)
            elif path.is_file():
                client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    _logged(upload)


def may_log_eids(cfg: DictConfig) -> bool:
    """Per-participant files go to a local store by default, to a server only when asked."""
    setting = cfg.tracking.log_eids
    return (not is_remote(tracking_uri(cfg))) if setting == "auto" else bool(setting)


def flat_config(cfg: DictConfig) -> dict[str, object]:
    """The composed config as dotted keys (MLflow params)."""
    flat: dict[str, object] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def cohort_params(card: dict) -> dict[str, int]:
    """The data card's cohort_steps as params: cohort/<step> (the participants a step concerns, or the count read, cases,
    controls) and cohort/<step>.excluded. Aggregate counts only."""
    params = {}
    for step in card.get("cohort_steps", []):
        params[COHORT_PARAM + step["step"]] = step["participants"]
        if "excluded" in step:
            params[f"{COHORT_PARAM}{step['step']}.excluded"] = step["excluded"]
    return params


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
