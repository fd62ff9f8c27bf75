"""The baselines as MLflow runs of their own (cadft baselines): on the same prepared split and terms as the training
run of the same config, each fitted, tuned, recalibrated and thresholded as in cadft.eval.baselines.run, its files
(metrics.json, predictions.jsonl, plots, report.html) in <run dir>/<name>/ and an MLflow run tagged kind=baseline
(kind=oracle for the synthetic cohort's true risk)."""

from __future__ import annotations

from pathlib import Path

from cadft.config.schema import Config
from cadft.data.prepare import prepare
from cadft.data.subsample import training_records
from cadft.eval.baselines.run import run_baselines, terms_for_run
from cadft.eval.report import shareable_files
from cadft.files import check_writable
from cadft.tracking import names, session, store


def run_tracked_baselines(config: Config, run_dir: Path) -> dict[str, dict]:
    """name -> metrics of every baseline in baselines.which (and the oracle, when there is one)."""
    run_dir = run_dir.resolve()
    check_writable(run_dir, "run dir (hydra.run.dir)")
    store.preflight(config.tracking, config.paths)
    prepared = prepare(config)
    table = prepared.table()
    terms = terms_for_run(table, config, training_records(table, config))
    results = run_baselines(
        table, terms, config, run_dir, which=tuple(config.baselines.which), context={"data": prepared.card}
    )
    for name, (metrics, _) in results.items():
        kind = names.KIND_ORACLE if name == "oracle" else names.KIND_BASELINE
        tags = {
            names.KIND_TAG: kind,
            "baseline": name,
            "strategy": name,
            "task": config.task.name,
            "data_hash": prepared.key[:12],
            names.RUN_DIR_TAG: str(run_dir / name),
        }
        session.start_run(config.tracking, config.paths, run_dir / name, tags, run_name=f"{kind}-{name}")
        with session.closing_run():  # FINISHED, KILLED when stopped, FAILED on an error
            session.log_params(
                {
                    "baseline": name,
                    "task.name": config.task.name,
                    "data.path": config.data.path,
                    "seed": config.seed,
                    "baseline.train_records": metrics["baseline"].get("train_records"),
                    "baseline.features": metrics["baseline"].get("features"),
                    "baseline.tuned": metrics["baseline"].get("tuned"),
                    "eval.recalibration": metrics["recalibration"]["method"],
                }
            )
            session.log_metrics(names.flatten_metrics(metrics))
            session.log_artifacts(
                shareable_files(run_dir / name, include_eids=store.may_log_eids(config.tracking, config.paths)),
                artifact_path="eval",
            )
    return {name: metrics for name, (metrics, _) in results.items()}
