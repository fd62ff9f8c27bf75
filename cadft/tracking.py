"""MLflow tracking (`tracking` group): where runs go, what is logged, and only from rank 0.

By default runs go to a SQLite store and an artifact folder under `paths.output_dir`
(`sqlite:///<abs>/mlflow.db`, `<abs>/mlartifacts`); `tracking.uri=http://127.0.0.1:5000` logs to a
running `mlflow server`, checked before training starts. One experiment per task, one run per job.
Nothing identifying is logged as a param, tag or metric: the config holds no eids or record text, and
per-participant predictions go up as an artifact only to a local store unless `tracking.log_eids=true`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cadft.errors import CadftError

log = logging.getLogger(__name__)
RUN_FILE = "mlflow_run.json"  # in the run dir: lets eval and resume find the run
PARENT_ENV = "CADFT_MLFLOW_PARENT_RUN_ID"  # set by the sweep callback: jobs become child runs
SWEEP_TAGS_ENV = "CADFT_MLFLOW_SWEEP_TAGS"  # set by the sweep callback: the job's swept values, JSON tags
SWEEP_RUN_NAME_ENV = "CADFT_MLFLOW_SWEEP_RUN_NAME"  # set by the sweep callback: the job's swept values, as a run name
MODEL_URI_TAG = "cadft.model_uri"  # a training run's logged pyfunc model (cadft.pyfunc), for cadft-eval and cadft-predict


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


def start_run(cfg: DictConfig, run_dir: Path, tags: dict[str, str], run_name: str | None = None) -> str | None:
    """Open (or, on resume, reopen) this job's MLflow run; returns its id (None when tracking is off)."""
    if not cfg.tracking.enabled or not is_main_process():
        return None
    import mlflow

    uri = tracking_uri(cfg)
    experiment_id = experiment_for(cfg)
    record = run_dir / RUN_FILE
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = json.loads(record.read_text())["run_id"] if record.is_file() else None
    parent = os.environ.get(PARENT_ENV)
    run = mlflow.start_run(
        run_id=previous,
        experiment_id=None if previous else experiment_id,
        run_name=None if previous else (run_name or cfg.tracking.run_name or os.environ.get(SWEEP_RUN_NAME_ENV) or run_dir.name),
        parent_run_id=parent if parent and not previous else None,
        tags=tags | json.loads(os.environ.get(SWEEP_TAGS_ENV, "{}")),
    )
    record.write_text(json.dumps({"run_id": run.info.run_id, "experiment_id": experiment_id, "tracking_uri": uri}) + "\n")
    return run.info.run_id


def experiment_for(cfg: DictConfig) -> str:
    """The id of the config's experiment (tracking.experiment), created on first use with its artifact location."""
    import mlflow

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


def _active_mlflow():
    """mlflow when this process (rank 0) has an open run, else None. With tracking.enabled=false no run is
    opened and mlflow is never imported, so training works without it."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or not is_main_process() or mlflow.active_run() is None:
        return None
    return mlflow


def is_active() -> bool:
    """Whether this process (rank 0) has an open MLflow run to log to."""
    return _active_mlflow() is not None


def end_run(status: str = "FINISHED") -> None:
    if mlflow := _active_mlflow():
        mlflow.end_run(status=status)


def log_params(params: dict) -> None:
    """Log params; on a resumed run (params already there) new keys are added and changed values, which
    MLflow refuses to overwrite, are recorded in the tag `cadft.resumed_with`."""
    if not (mlflow := _active_mlflow()):
        return
    values = {k: _short(v) for k, v in params.items()}
    logged = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    changed = {k: v for k, v in values.items() if k in logged and logged[k] != v}
    mlflow.log_params({k: v for k, v in values.items() if k not in logged})
    if changed:
        mlflow.set_tag("cadft.resumed_with", _short(changed))


def set_tags(tags: dict[str, str]) -> None:
    if mlflow := _active_mlflow():
        mlflow.set_tags({k: _short(v) for k, v in tags.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if numeric and (mlflow := _active_mlflow()):
        mlflow.log_metrics(numeric, step=step)


def log_artifacts(paths: list[Path], artifact_path: str | None = None) -> None:
    if not (mlflow := _active_mlflow()):
        return
    for path in paths:
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=f"{artifact_path}/{path.name}" if artifact_path else path.name)
        elif path.is_file():
            mlflow.log_artifact(str(path), artifact_path=artifact_path)


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


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def reopen_run(run_dir: Path) -> bool:
    """Make the MLflow run recorded in run_dir the active one (for cadft-eval); False when there is none."""
    record = run_dir / RUN_FILE
    if not record.is_file() or not is_main_process():
        return False
    import mlflow

    info = json.loads(record.read_text())
    mlflow.set_tracking_uri(info["tracking_uri"])
    mlflow.start_run(run_id=info["run_id"])
    return True
