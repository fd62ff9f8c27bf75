"""A saved run, found and evaluated again: its run dir, checkpoint, model dir or MLflow run id (`resolve_target`), its
saved config (`load_run_config`), its prepared splits (rebuilt from data.path through the cache if they are gone) and
its calibrator; `evaluate` checks the model folder against its record (cadft.predict.check), scores it as training
did (cadft.eval.run) and logs to an MLflow run of its own (cadft.eval.evaluation_run), or, with finish=True, completes
a run stopped before it was scored.

Where the files go by default: a run dir's evaluation gets a new folder, <run>/evaluations/<date>_<time>/ (eval/ is
what training wrote and stays so); a checkpoint's goes to eval/ inside it; --finish writes the run's own eval/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
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
    RunLayout,
)
from cadft.tracking import names


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
        return Target(path, path / MODEL_DIR, new_evaluation_dir(path))
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


def new_evaluation_dir(run_dir: Path) -> Path:
    """<run>/evaluations/<date>_<time>: the name; `evaluate` makes it (another -2, -3, ... when it exists)."""
    return RunLayout(run_dir).evaluations / time.strftime("%Y-%m-%d_%H-%M-%S")


def _reserved(folder: Path) -> Path:
    """`folder`, or `folder`-2, -3, ...: the first that this process creates (two evaluations in one second)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for number in range(1, 1000):
        candidate = folder if number == 1 else folder.with_name(f"{folder.name}-{number}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise CadftError(f"{folder.parent}: 999 evaluations started in the same second; give --out DIR")


def finished_target(target: Target, overrides: list[str]) -> Target:
    """The target of `cadft eval RUN --finish`: a local run dir whose model was saved but not scored (no
    calibrator), evaluated with its own config (data.path may point at a copy of the extract) into its own eval/."""
    layout = RunLayout(target.run_dir)
    if target.model_dir != layout.model_dir or not layout.config.is_file():
        raise CadftError(f"--finish completes a local training run dir (with {MODEL_DIR}/), not {target.model_dir}")
    if (layout.model_dir / CALIBRATOR_FILE).is_file():
        raise CadftError(
            f"{target.run_dir}: its {MODEL_DIR}/{CALIBRATOR_FILE} is there, nothing to finish; cadft eval "
            f"{target.run_dir} (without --finish) evaluates it again"
        )
    changed = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "data.path"]
    if changed:
        raise CadftError(
            f"--finish writes the calibrator and metrics the run's own config gives: no overrides but data.path "
            f"(got {' '.join(changed)})"
        )
    return Target(target.run_dir, layout.model_dir, layout.eval_dir)


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


def _fits_the_scores(saved, run_dir: Path, config: Config) -> bool:
    """Whether the saved calibrator is the one eval.recalibration fits to these scores: the same method, on scores
    averaged over the same feature orders (eval.test_time_orders, drawn from the seed) as the run's."""

    def orders(c: Config) -> tuple:
        return c.eval.test_time_orders, c.seed if c.eval.test_time_orders > 1 else None

    return saved.method == config.eval.recalibration and orders(config) == orders(load_run_config(run_dir, []))


def check_target(target: Target, config: Config, overrides: list[str]):
    """The model folder checked against what its run recorded (files, calibrator, what it was trained on) before it
    is loaded (cadft.predict.check); returns its saved calibrator, or None."""
    from cadft.predict.check import check_model

    run_model = RunLayout(target.run_dir).model_dir
    return check_model(
        target.model_dir,
        config,
        label=str(target.run_dir),
        config_source=f"the run's {RESOLVED_CONFIG}" + (" with the overrides" if overrides else ""),
        record_dir=run_model if target.model_dir != run_model else None,
    )


def evaluate(
    target: Target,
    config: Config,
    *,
    device_setting: str = "auto",
    overrides: list[str] | None = None,
    finish: bool = False,
) -> tuple[dict, dict]:
    """(metrics, the baselines' metrics), logged to an MLflow run of its own (cadft.eval.evaluation_run); the
    calibrator saved with the model is reused when eval.recalibration matches and the scores are made as the run made
    them (_fits_the_scores). finish=True (`finished_target`): the
    run's own eval/ and calibrator, and its metrics logged into the training run."""
    from transformers import AutoTokenizer

    from cadft.eval import evaluation_run
    from cadft.eval.recalibration import TrainingSample
    from cadft.eval.report import shareable_files
    from cadft.eval.run import evaluate_model
    from cadft.files import check_writable, writing
    from cadft.train.model import load_model
    from cadft.train.trainer import resolve_device

    overrides = list(overrides or [])
    saved = check_target(target, config, overrides)
    recalibrator = saved if saved is not None and _fits_the_scores(saved, target.run_dir, config) else None
    check_writable(target.out_dir, "output folder (--out)", create=False)  # before the model loads
    if target.out_dir.parent == RunLayout(target.run_dir).evaluations:
        target = dataclasses.replace(target, out_dir=_reserved(target.out_dir))
    device = resolve_device(device_setting)
    table, card = load_prepared_table(target.run_dir, config)
    sample = TrainingSample.load(target.model_dir / TRAINING_SAMPLE_FILE) or TrainingSample.load(
        target.run_dir / MODEL_DIR / TRAINING_SAMPLE_FILE
    )
    tracked = (
        contextlib.nullcontext()
        if finish
        else evaluation_run.evaluation_run(target.run_dir, target.model_dir, target.out_dir, config, overrides)
    )
    with tracked:
        model = load_model(target.model_dir, device=device)
        tokenizer = AutoTokenizer.from_pretrained(target.model_dir)
        with writing(target.out_dir):
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
                recalibrator=recalibrator,
            )
        files = shareable_files(target.out_dir, include_eids=evaluation_run.may_log_eids(target.run_dir, config))
        if finish:
            from cadft.train.provenance import save_calibrator

            save_calibrator(target.model_dir, metrics["recalibration"])
            evaluation_run.log_finished_run(target.run_dir, names.flatten_metrics(metrics), files)
        else:
            evaluation_run.log_results(names.flatten_metrics(metrics), files)
    return metrics, baselines
