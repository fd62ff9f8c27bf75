"""A saved run, found and evaluated again: its run dir, checkpoint, model dir or MLflow run id (`resolve_target`), its
saved config (`load_run_config`), its prepared splits (rebuilt from data.path through the cache if they are gone) and
its calibrator; `evaluate` scores it as training did (cadft.eval.run) and logs to its MLflow run."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cadft.config.schema import Config
from cadft.config.validate import load
from cadft.data.cache import Prepared
from cadft.data.subsample import training_records
from cadft.errors import CadftError
from cadft.layout import (
    CALIBRATOR_FILE,
    CHECKPOINT_DIR,
    CHECKPOINT_INFO,
    EVAL_DIR,
    MODEL_DIR,
    PREPARED_RECORD,
    RESOLVED_CONFIG,
    TRAINING_SAMPLE_FILE,
)
from cadft.tracking import names, session, store


@dataclass(frozen=True)
class Target:
    run_dir: Path
    model_dir: Path
    out_dir: Path


def resolve_target(target: str, tracking_uri: str | None) -> Target:
    path = Path(target)
    if path.is_dir():
        return _local_target(path.resolve())
    if path.exists() or os.sep in target:
        raise CadftError(f"{target}: not a run dir, checkpoint dir or MLflow run id")
    return _mlflow_target(target, tracking_uri)


def _local_target(path: Path) -> Target:
    if (path / MODEL_DIR / CHECKPOINT_INFO).is_file():
        return Target(path, path / MODEL_DIR, path / EVAL_DIR)
    if (path / CHECKPOINT_INFO).is_file():
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise CadftError(f"{path}: {CHECKPOINT_INFO} is there but no adapter or model weights (*.safetensors)")
        run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
        return Target(run_dir, path, path / EVAL_DIR)
    raise CadftError(
        f"{path}: no adapter or model here: expected {MODEL_DIR}/{CHECKPOINT_INFO} (a run dir) or "
        f"{CHECKPOINT_INFO} (a checkpoint)"
    )


def _mlflow_target(run_id: str, tracking_uri: str | None) -> Target:
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException as err:
        raise CadftError(
            f"{run_id}: not a run dir, and MLflow ({mlflow.get_tracking_uri()}) has no such run ({err.error_code})"
        ) from None
    local = Path(run.data.tags.get(names.RUN_DIR_TAG, ""))
    if local.is_dir():
        return _local_target(local)
    download = Path(tempfile.mkdtemp(prefix=f"cadft-eval-{run_id[:8]}-"))
    model_uri = run.data.tags.get(names.MODEL_URI_TAG)
    if model_uri:  # log_model=pyfunc: the logged model holds the run's config and model folder
        from cadft.tracking.logged_model import RUN_ARTIFACT

        model = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(download)))
        root = model / "artifacts" / RUN_ARTIFACT
        return Target(root, root / MODEL_DIR, download / EVAL_DIR)
    for artifact in ("config", MODEL_DIR):
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(download))
    (download / RESOLVED_CONFIG).write_text((download / "config" / RESOLVED_CONFIG).read_text())
    return Target(download, download / MODEL_DIR, download / EVAL_DIR)


def load_run_config(run_dir: Path, overrides: list[str]) -> Config:
    for candidate in (run_dir / RESOLVED_CONFIG, run_dir / ".hydra" / "config.yaml"):
        if candidate.is_file():
            return load(candidate, overrides)
    raise CadftError(f"{run_dir}: the run's resolved config (config.yaml) is missing")


def load_prepared_table(run_dir: Path, config: Config) -> tuple[pl.DataFrame, dict | None]:
    """(table, data card): the run's own prepared table if it is still there, else rebuilt from data.path (through the
    cache)."""
    record = run_dir / PREPARED_RECORD
    if record.is_file():
        table_path = Path(json.loads(record.read_text())["table"])
        if table_path.is_file():
            prepared = Prepared(table_path.parent, json.loads(record.read_text())["key"])
            return prepared.table(), prepared.card if prepared.card_path.is_file() else None
    if not Path(config.data.path).is_file():
        raise CadftError(
            f"the prepared data of {run_dir} is gone and cannot be rebuilt: data.path={config.data.path} does "
            "not exist "
            "(pass data.path=FILE to rebuild it from a copy of the extract)"
        )
    from cadft.data.prepare import prepare

    prepared = prepare(config)
    return prepared.table(), prepared.card


def saved_recalibrator(model_dir: Path, method: str):
    """The calibrator saved beside the model when it is the configured method (else None: fitted again on
    validation)."""
    from cadft.eval.recalibration import Recalibrator

    path = model_dir / CALIBRATOR_FILE
    if not path.is_file():
        return None
    recalibrator = Recalibrator.load(path)
    return recalibrator if recalibrator.method == method else None


def evaluate(target: Target, config: Config, *, device_setting: str = "auto") -> tuple[dict, dict]:
    """(metrics, the baselines' metrics); the calibrator saved with the model is reused when eval.recalibration
    matches."""
    from transformers import AutoTokenizer

    from cadft.eval.recalibration import TrainingSample
    from cadft.eval.report import shareable_files
    from cadft.eval.run import evaluate_model
    from cadft.train.model import load_model
    from cadft.train.trainer import resolve_device

    device = resolve_device(device_setting)
    table, card = load_prepared_table(target.run_dir, config)
    model = load_model(target.model_dir, device=device)
    tokenizer = AutoTokenizer.from_pretrained(target.model_dir)
    sample = TrainingSample.load(target.model_dir / TRAINING_SAMPLE_FILE) or TrainingSample.load(
        target.run_dir / MODEL_DIR / TRAINING_SAMPLE_FILE
    )
    metrics, baselines = evaluate_model(
        model,
        tokenizer,
        table,
        config,
        target.out_dir,
        device=device,
        train_rows=training_records(table, config),
        sample=sample,
        card=card,
        recalibrator=saved_recalibrator(target.model_dir, config.eval.recalibration),
    )
    flat = names.flatten_metrics(metrics)
    if session.reopen_run(target.run_dir):
        try:
            prefix = "" if target.model_dir.name == MODEL_DIR else f"{target.model_dir.name}/"
            session.log_metrics({prefix + k: v for k, v in flat.items()})
            files = shareable_files(target.out_dir, include_eids=store.may_log_eids(config.tracking, config.paths))
            session.log_artifacts(files, artifact_path=f"eval/{prefix.rstrip('/')}" if prefix else "eval")
        finally:
            session.end_run()
    return metrics, baselines
