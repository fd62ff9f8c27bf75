"""cadft-eval: a trained run -> metrics.json, predictions.jsonl and plots, logged to its MLflow run.

    cadft-eval TARGET [KEY=VALUE ...] [--out DIR] [--device auto|cpu|cuda] [--tracking-uri URI]

TARGET is a training run dir (outputs/runs/DATE/TIME), one of its checkpoints
(.../checkpoints/checkpoint-N), a saved model dir, or an MLflow run id. Only what the run saved is used:
its resolved config, the adapter or model, and the prepared splits (rebuilt from data.path through the
cache if they are gone). KEY=VALUE overrides the saved config, e.g. eval.threshold=max_f1 eval.bootstrap=2000.
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

PREPARED_RECORD = "prepared.json"  # written by cadft-train: where its prepared table is


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
    from cadft.strategy import CHECKPOINT_INFO
    from cadft.train import EVAL_DIR, MODEL_DIR

    if (path / MODEL_DIR / CHECKPOINT_INFO).is_file():
        return Target(path, path / MODEL_DIR, path / EVAL_DIR)
    if (path / CHECKPOINT_INFO).is_file():
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise CadftError(f"{path}: {CHECKPOINT_INFO} is there but no adapter or model weights (*.safetensors)")
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
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
    local = Path(run.data.tags.get("cadft.run_dir", ""))
    if local.is_dir():
        return _local_target(local)
    download = Path(tempfile.mkdtemp(prefix=f"cadft-eval-{run_id[:8]}-"))
    for artifact in ("config", "model"):
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(download))
    (download / "config.yaml").write_text((download / "config" / "config.yaml").read_text())
    return Target(download, download / "model", download / "eval")


def load_run_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    for candidate in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if candidate.is_file():
            cfg = OmegaConf.merge(OmegaConf.load(candidate), OmegaConf.from_dotlist(overrides))
            validate(cfg)
            return cfg
    raise CadftError(f"{run_dir}: the run's resolved config (config.yaml) is missing")


def load_prepared_table(run_dir: Path, cfg: DictConfig) -> pl.DataFrame:
    """The run's own prepared table if it is still there, else rebuilt from data.path (through the cache)."""
    record = run_dir / PREPARED_RECORD
    if record.is_file():
        table_path = Path(json.loads(record.read_text())["table"])
        if table_path.is_file():
            return pl.read_parquet(table_path)
    if not Path(cfg.data.path).is_file():
        raise CadftError(
            f"the prepared data of {run_dir} is gone and cannot be rebuilt: data.path={cfg.data.path} does not exist "
            "(pass data.path=FILE to rebuild it from a copy of the extract)"
        )
    from cadft.prepare import prepare

    return prepare(cfg).table()


def evaluate(target: Target, cfg: DictConfig, *, device_setting: str = "auto") -> dict:
    from transformers import AutoTokenizer

    from cadft.eval.run import artifact_files, evaluate_model
    from cadft.strategy import load_model
    from cadft.trainer import resolve_device

    device = resolve_device(device_setting)
    table = load_prepared_table(target.run_dir, cfg)
    model = load_model(target.model_dir, device=device)
    tokenizer = AutoTokenizer.from_pretrained(target.model_dir)
    metrics, flat = evaluate_model(model, tokenizer, table, cfg, target.out_dir, device=device)
    if tracking.reopen_run(target.run_dir):
        try:
            prefix = "" if target.model_dir.name == "model" else f"{target.model_dir.name}/"
            tracking.log_metrics({prefix + k: v for k, v in flat.items()})
            files = artifact_files(target.out_dir, include_eids=tracking.may_log_eids(cfg))
            tracking.log_artifacts(files, artifact_path=f"eval/{prefix.rstrip('/')}" if prefix else "eval")
        finally:
            tracking.end_run()
    return metrics


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
    metrics = evaluate(target, cfg, device_setting=args.device)
    test = metrics["test"]
    ci = (test.get("ci") or {}).get("auroc")
    print(f"test AUROC {test['auroc']:.3f}" + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")
          + f"  AUPRC {test['auprc']:.3f}  Brier {test['brier']:.4f}")
    print(f"metrics:     {target.out_dir / 'metrics.json'}\npredictions: {target.out_dir / 'predictions.jsonl'}")


if __name__ == "__main__":
    main()
