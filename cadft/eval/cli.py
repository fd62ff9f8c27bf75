"""cadft-eval: a trained run -> metrics.json, predictions.jsonl, plots and report.html, logged to its MLflow run.

    cadft-eval TARGET [KEY=VALUE ...] [--out DIR] [--device auto|cpu|cuda] [--tracking-uri URI]

TARGET is a training run dir (outputs/runs/DATE/TIME), one of its checkpoints
(.../checkpoints/checkpoint-N), a saved model dir, or an MLflow run id. Only what the run saved is used:
its resolved config, the adapter or model, and the prepared splits (rebuilt from data.path through the
cache if they are gone). KEY=VALUE overrides the saved config, e.g. eval.threshold=max_f1 eval.bootstrap=2000.
The calibrator saved beside the model (model/calibrator.json) is reused when eval.recalibration names its method;
otherwise (another method, a checkpoint) it is fitted again on validation. The baselines are refitted on the run's
own training records and features (deterministic), so the comparison matches the run's.
Writes to --out (default: the run's eval/ dir, or eval/ inside a checkpoint) and logs the metrics and
files to the run's MLflow run when it has one.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from omegaconf import DictConfig, OmegaConf

from cadft import tracking
from cadft.cli import ArgumentParser, exit_on_user_error
from cadft.config import check_overrides, validate
from cadft.errors import CadftError
from cadft.head import CLASSIFIER
from cadft.layout import (CALIBRATOR_FILE, CHECKPOINT_DIR, CHECKPOINT_INFO, EVAL_DIR, METRICS_FILE, MODEL_DIR, PREDICTIONS_FILE, PREPARED_RECORD,
                          REPORT_FILE, RESOLVED_CONFIG, TRAINING_SAMPLE_FILE)


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
    raise CadftError(f"{path}: no adapter or model here: expected {MODEL_DIR}/{CHECKPOINT_INFO} (a run dir) or {CHECKPOINT_INFO} (a checkpoint)")


def _mlflow_target(run_id: str, tracking_uri: str | None) -> Target:
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException as err:
        raise CadftError(f"{run_id}: not a run dir, and MLflow ({mlflow.get_tracking_uri()}) has no such run ({err.error_code})") from None
    local = Path(run.data.tags.get(tracking.RUN_DIR_TAG, ""))
    if local.is_dir():
        return _local_target(local)
    download = Path(tempfile.mkdtemp(prefix=f"cadft-eval-{run_id[:8]}-"))
    model_uri = run.data.tags.get(tracking.MODEL_URI_TAG)
    if model_uri:  # log_model=pyfunc: the logged model holds the run's config and model folder
        from cadft.pyfunc import RUN_ARTIFACT

        model = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(download)))
        root = model / "artifacts" / RUN_ARTIFACT
        return Target(root, root / MODEL_DIR, download / EVAL_DIR)
    for artifact in ("config", MODEL_DIR):
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(download))
    (download / RESOLVED_CONFIG).write_text((download / "config" / RESOLVED_CONFIG).read_text())
    return Target(download, download / MODEL_DIR, download / EVAL_DIR)


def load_run_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    for candidate in (run_dir / RESOLVED_CONFIG, run_dir / ".hydra" / "config.yaml"):
        if candidate.is_file():
            saved = OmegaConf.load(candidate)
            if "head" not in saved:  # saved before the head group existed: those runs used the classifier
                saved.head = dict(CLASSIFIER)
            cfg = OmegaConf.merge(saved, OmegaConf.from_dotlist(overrides))
            validate(cfg)
            return cfg
    raise CadftError(f"{run_dir}: the run's resolved config (config.yaml) is missing")


def load_prepared_table(run_dir: Path, cfg: DictConfig) -> tuple[pl.DataFrame, dict | None]:
    """(table, data card): the run's own prepared table if it is still there, else rebuilt from data.path (through the cache)."""
    record = run_dir / PREPARED_RECORD
    if record.is_file():
        table_path = Path(json.loads(record.read_text())["table"])
        if table_path.is_file():
            from cadft.prepare import Prepared

            prepared = Prepared(table_path.parent, json.loads(record.read_text())["key"])
            return prepared.table(), prepared.card if prepared.card_path.is_file() else None
    if not Path(cfg.data.path).is_file():
        raise CadftError(
            f"the prepared data of {run_dir} is gone and cannot be rebuilt: data.path={cfg.data.path} does not exist "
            "(pass data.path=FILE to rebuild it from a copy of the extract)"
        )
    from cadft.prepare import prepare

    prepared = prepare(cfg)
    return prepared.table(), prepared.card


def saved_recalibrator(model_dir: Path, method: str):
    """The calibrator saved beside the model when it is the configured method (else None: fitted again on validation)."""
    from cadft.eval.recalibration import Recalibrator

    path = model_dir / CALIBRATOR_FILE
    if not path.is_file():
        return None
    recalibrator = Recalibrator.load(path)
    return recalibrator if recalibrator.method == method else None


def evaluate(target: Target, cfg: DictConfig, *, device_setting: str = "auto") -> tuple[dict, dict]:
    """(metrics, the baselines' metrics); the calibrator saved with the model is reused when eval.recalibration matches."""
    from transformers import AutoTokenizer

    from cadft.dataset import training_records
    from cadft.eval.metrics import flatten_metrics
    from cadft.eval.run import artifact_files, evaluate_model
    from cadft.model import load_model
    from cadft.trainer import resolve_device

    device = resolve_device(device_setting)
    table, card = load_prepared_table(target.run_dir, cfg)
    model = load_model(target.model_dir, device=device)
    tokenizer = AutoTokenizer.from_pretrained(target.model_dir)
    from cadft.eval.recalibration import TrainingSample

    sample = TrainingSample.load(target.model_dir / TRAINING_SAMPLE_FILE) or TrainingSample.load(target.run_dir / MODEL_DIR / TRAINING_SAMPLE_FILE)
    metrics, baselines = evaluate_model(model, tokenizer, table, cfg, target.out_dir, device=device, train_rows=training_records(table, cfg),
                                        sample=sample, card=card,
                                        recalibrator=saved_recalibrator(target.model_dir, str(cfg.eval.recalibration)))
    flat = flatten_metrics(metrics)
    if tracking.reopen_run(target.run_dir):
        try:
            prefix = "" if target.model_dir.name == "model" else f"{target.model_dir.name}/"
            tracking.log_metrics({prefix + k: v for k, v in flat.items()})
            files = artifact_files(target.out_dir, include_eids=tracking.may_log_eids(cfg))
            tracking.log_artifacts(files, artifact_path=f"eval/{prefix.rstrip('/')}" if prefix else "eval")
        finally:
            tracking.end_run()
    return metrics, baselines


@exit_on_user_error("cadft-eval")
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="cadft-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="run dir, checkpoint dir, model dir or MLflow run id")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the run's config (eval.*, data.path, ...)")
    parser.add_argument("--out", type=Path, help="output dir (default: eval/ in the run or checkpoint)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--tracking-uri", help="MLflow tracking URI to find a run id in (default: MLFLOW_TRACKING_URI)")
    args = parser.parse_args(argv)
    check_overrides(args.overrides)  # before the run is looked up: a mistake stops here
    target = resolve_target(args.target, args.tracking_uri)
    if args.out:
        target = Target(target.run_dir, target.model_dir, args.out.resolve())
    cfg = load_run_config(target.run_dir, args.overrides)
    metrics, baselines = evaluate(target, cfg, device_setting=args.device)
    from cadft.eval.summary import print_summary

    print_summary(f"cadft-eval: {target.model_dir} (risks recalibrated: {metrics['recalibration']['method']})",
                  {metrics["model"]: metrics} | baselines, metrics.get("comparison"),
                  footer=[f"{name}: {target.out_dir / file}" for name, file in (("metrics", METRICS_FILE), ("predictions", PREDICTIONS_FILE), ("report", REPORT_FILE))])


if __name__ == "__main__":
    main()
