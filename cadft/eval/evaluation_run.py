"""Where `cadft eval` (and `cadft explain`) log: never over the training run's record.

An evaluation of a trained run (its model or a checkpoint) is an MLflow run of its own, opened before scoring and
ended FINISHED, KILLED (a stop) or FAILED (an error): kind=evaluation, tagged cadft.evaluates=<training run id> and
nested under the training run (mlflow.parentRunId), in the same experiment, with the evaluation's config as params
(overrides included) and its metrics and report files. The training run's params, metrics, status and files stay what
training wrote, so the UI and the leaderboard describe the model that `cadft predict` applies; the leaderboard
leaves evaluations out (cadft.tracking.leaderboard.experiment_runs). `cadft explain` logs the same way
(kind=explanation).

One exception, asked for by name: `cadft eval RUN --finish` completes a run stopped after its model was saved but
before it was scored. It evaluates with the run's own config (no override but data.path), writes the run's eval/ and
the calibrator training would have written (cadft.train.provenance.save_calibrator), and logs those metrics and files
into the training run itself, tagged cadft.finished_by, leaving its status (KILLED) as it was.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from cadft.config.schema import Config
from cadft.config.typecheck import plain
from cadft.layout import RUN_RECORD
from cadft.tracking import names, session, store
from cadft.tracking.record import read_record


@contextlib.contextmanager
def evaluation_run(
    run_dir: Path,
    model_dir: Path,
    out_dir: Path,
    config: Config,
    overrides: list[str],
    kind: str = names.KIND_EVALUATION,
) -> Iterator:
    """A new MLflow run for this evaluation (or explanation: `kind`), open while the block runs (nothing when the
    training run has no MLflow record); its local record is `out_dir`/mlflow_run.json. When the evaluation fails or
    is stopped, an out_dir that holds nothing else (the report is written whole or not at all) is removed."""
    record = read_record(run_dir)
    try:
        if record:
            tracking = _tracking_of(record, config)
            training_run = record.get("run_id")
            tags = {
                names.KIND_TAG: kind,
                names.EVALUATES_TAG: training_run or "offline",
                names.EVALUATED_MODEL_TAG: model_dir.name,
                names.RUN_DIR_TAG: str(out_dir),
                "task": config.task.name,
            }
            session.start_run(
                tracking,
                config.paths,
                out_dir,
                tags,
                run_name=f"{kind}-{run_dir.name}-{out_dir.name}",
                parent_run_id=training_run,
                resume=False,
            )
        with session.closing_run():
            session.log_params(
                names.flat_config(plain(config)) | {"eval.model": str(model_dir), "eval.overrides": " ".join(overrides)}
            )
            yield
    except BaseException:
        if out_dir.is_dir() and all(path.name == RUN_RECORD for path in out_dir.iterdir()):
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def log_results(flat_metrics: dict, files: list[Path], artifact_path: str = "eval") -> None:
    """The evaluation's metrics and report files, into the open run."""
    session.log_metrics(flat_metrics)
    session.log_artifacts(files, artifact_path=artifact_path)


def log_finished_run(run_dir: Path, flat_metrics: dict, files: list[Path]) -> None:
    """--finish: the metrics and report training did not get to log, into the training run itself, its status as it
    was."""
    if not session.reopen_run(run_dir, mark_running=False):
        return
    try:
        session.log_metrics(flat_metrics)
        session.log_artifacts(files, artifact_path="eval")
        session.set_tags({names.FINISHED_BY_TAG: "cadft eval --finish"})
    finally:
        session.leave_run()


def may_log_eids(run_dir: Path, config: Config) -> bool:
    """Whether predictions go up with their eids: to the store the training run logged to, by its rule."""
    record = read_record(run_dir)
    tracking = _tracking_of(record, config) if record else config.tracking
    return store.may_log_eids(tracking, config.paths)


def _tracking_of(record: dict, config: Config):
    """The training run's store and experiment (where its record says it logged), with this config's other
    settings."""
    return replace(
        config.tracking,
        enabled=True,
        uri=record["tracking_uri"],
        experiment=record.get("experiment") or config.tracking.experiment,
        run_name=None,
    )
