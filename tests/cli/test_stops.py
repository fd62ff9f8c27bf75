"""Runs that start together and runs that are stopped, through the real commands (tests/phase_probe.py holds a
command in a phase until the test signals it; cadft has no test hook):

- three `cadft train` started at the same moment on a new default store (outputs/mlflow.db of a fresh output dir),
  one left to finish, one stopped with SIGTERM while it scores, one with SIGINT while it logs: all three recorded,
  the stopped ones KILLED, nothing half-written (the issue's race lost two of three runs and could break the store);
- the run stopped while scoring is refused by predict with the command that finishes it, and `cadft eval RUN
  --finish` writes its calibrator and metrics, its status staying KILLED;
- `cadft eval` (stopped while scoring, and while logging), `cadft predict` (while scoring) and `cadft baselines`
  (while logging), started together: exit 128 + the signal with one line, their MLflow runs KILLED, the training run
  untouched, no report, CSV or temporary file left.
(SIGTERM during training steps: tests/tracking/test_session.py.)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cadft.cli.eval import main as eval_main
from tests.conftest import REPO, TINY_TRAINING

PROBE = REPO / "tests" / "phase_probe.py"
SCORING = "cadft.eval.run:score_texts"  # train and eval score validation and test here
LOGGING = "cadft.tracking.session:log_artifacts"  # every command's upload of its files to its MLflow run


def _start(command: list[str], cwd: Path, wait_in: str | None = None, marker: Path | None = None) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    if wait_in:
        env |= {"CADFT_PROBE_WAIT": wait_in, "CADFT_PROBE_MARKER": str(marker)}
    return subprocess.Popen(
        [sys.executable, str(PROBE), *command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _signal_when_waiting(process: subprocess.Popen, marker: Path, signum: int) -> None:
    deadline = time.time() + 300
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), f"never reached the phase: {process.communicate()[1][-3000:]}"
    process.send_signal(signum)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def _status(record_dir: Path) -> str:
    record = json.loads((record_dir / "mlflow_run.json").read_text())
    return MlflowClient(record["tracking_uri"]).get_run(record["run_id"]).info.status


@pytest.fixture(scope="module")
def trainings(synthetic_cohort, prepared_dir, tmp_path_factory):
    """Three trainings started together on a new default store: finished, stopped while scoring (SIGTERM), stopped
    while logging (SIGINT); their (exit status, stderr) and run dirs."""
    extract, oracle = synthetic_cohort
    root = tmp_path_factory.mktemp("together")
    common = [
        "train",
        "backbone=tiny",
        f"data.path={extract}",
        f"data.oracle_path={oracle}",
        f"paths.output_dir={root / 'outputs'}",  # no tracking.uri: the default store, new
        f"paths.prepared_dir={prepared_dir}",
        *TINY_TRAINING,
    ]
    plans = {"finished": None, "scoring": (SCORING, signal.SIGTERM), "logging": (LOGGING, signal.SIGINT)}
    processes = {
        name: _start(
            [*common, f"hydra.run.dir={root / name}"], root, *(plan[0], root / f"{name}.marker") if plan else ()
        )
        for name, plan in plans.items()
    }
    for name, plan in plans.items():
        if plan:
            _signal_when_waiting(processes[name], root / f"{name}.marker", plan[1])
    results = {name: _finish(process) for name, process in processes.items()}
    return root, results


@pytest.mark.slow
def test_trainings_started_together_on_a_new_store_are_all_recorded(trainings):
    root, results = trainings
    assert results["finished"][0] == 0, results["finished"][1][-3000:]
    client = MlflowClient(f"sqlite:///{root / 'outputs' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(run.info.status for run in runs) == ["FINISHED", "KILLED", "KILLED"]
    assert {run.data.tags["cadft.run_dir"] for run in runs} == {
        str(root / n) for n in ("finished", "scoring", "logging")
    }
    with sqlite3.connect(root / "outputs" / "mlflow.db") as db:  # no half-done migration left behind
        assert not db.execute("SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp_%'").fetchall()


@pytest.mark.slow
def test_a_training_stopped_while_scoring_ends_killed_and_is_finished_by_eval(
    trainings, synthetic_cohort, tmp_path, capsys
):
    root, results = trainings
    code, err = results["scoring"]
    run = root / "scoring"
    assert code == 128 + signal.SIGTERM and err.strip().splitlines()[-1] == (
        "cadft train: stopped by signal SIGTERM (nothing half-written was left)"
    ), err[-3000:]
    assert _status(run) == "KILLED"
    assert (run / "model" / "cadft_model.json").is_file() and not (run / "model" / "calibrator.json").exists()
    assert not (run / "eval").exists() or not any((run / "eval").iterdir())  # no report, not half of one
    from cadft.cli.predict import main as predict_main

    with pytest.raises(SystemExit) as stopped:
        predict_main([f"run={run}", f"data.path={synthetic_cohort[0]}", f"out={tmp_path / 'risks.csv'}"])
    assert stopped.value.code == 2
    assert f"finish it with: cadft eval {run} --finish" in capsys.readouterr().err

    eval_main([str(run), "--finish"])
    assert _status(run) == "KILLED"  # its status is history: finishing writes what the run did not get to
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    calibrator = json.loads((run / "model" / "calibrator.json").read_text())
    assert calibrator == metrics["recalibration"] and calibrator["method"] == "platt"
    record = json.loads((run / "mlflow_run.json").read_text())
    logged = MlflowClient(record["tracking_uri"]).get_run(record["run_id"])
    assert logged.data.metrics["test/auroc"] == metrics["test"]["auroc"]
    assert logged.data.tags["cadft.finished_by"] == "cadft eval --finish"
    assert logged.data.params["eval.recalibration"] == "platt"
    from cadft.predict.trained_run import TrainedRun

    assert TrainedRun(run).recalibrator.params == calibrator["params"]  # predict now applies it
    with pytest.raises(SystemExit):
        eval_main([str(run), "--finish"])  # once only
    assert "nothing to finish" in capsys.readouterr().err


@pytest.mark.slow
def test_a_training_stopped_while_logging_ends_killed(trainings):
    root, results = trainings
    code, err = results["logging"]
    assert code == 128 + signal.SIGINT and "cadft train: stopped by signal SIGINT" in err, err[-3000:]
    assert _status(root / "logging") == "KILLED"
    # Scored and saved whole before it logged: a complete run, whose MLflow record says it was stopped.
    assert (root / "logging" / "model" / "calibrator.json").is_file()
    assert (root / "logging" / "eval" / "metrics.json").is_file()


@pytest.mark.slow
def test_eval_predict_and_baselines_stopped_in_each_phase(tiny_run, synthetic_cohort, prepared_dir, tmp_path):
    extract, oracle = synthetic_cohort
    record = json.loads((tiny_run / "mlflow_run.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    before = client.get_run(record["run_id"])
    evaluations = set((tiny_run / "evaluations").iterdir()) if (tiny_run / "evaluations").is_dir() else set()
    baselines_dir = tmp_path / "baselines"
    plans = {
        "eval scoring": (["eval", str(tiny_run)], SCORING, signal.SIGTERM),
        "eval logging": (["eval", str(tiny_run), "--out", str(tmp_path / "eval-logging")], LOGGING, signal.SIGINT),
        "predict scoring": (
            ["predict", f"run={tiny_run}", f"data.path={extract}", f"out={tmp_path / 'risks.csv'}"],
            "cadft.eval.score:score_texts",
            signal.SIGTERM,
        ),
        "baselines logging": (
            [
                "baselines",
                "backbone=tiny",
                f"data.path={extract}",
                f"data.oracle_path={oracle}",
                f"paths.output_dir={tmp_path / 'outputs'}",
                f"paths.prepared_dir={prepared_dir}",
                f"hydra.run.dir={baselines_dir}",
                *TINY_TRAINING,
            ],
            LOGGING,
            signal.SIGINT,
        ),
    }
    markers = {name: tmp_path / f"{name.replace(' ', '-')}.marker" for name in plans}
    processes = {
        name: _start(command, tmp_path, wait_in, markers[name]) for name, (command, wait_in, _) in plans.items()
    }
    for name, (_, _, signum) in plans.items():
        _signal_when_waiting(processes[name], markers[name], signum)
    results = {name: _finish(process) for name, process in processes.items()}
    for name, (code, err) in results.items():
        signum = plans[name][2]
        assert code == 128 + signum, (name, err[-3000:])
        assert err.strip().splitlines()[-1].endswith(f"stopped by signal {signum.name} (nothing half-written was left)")

    # eval: stopped while scoring, no report left; while logging, its report is whole (written before) and its run
    # KILLED, as a training run stopped while logging; the training run as training left it
    assert set((tiny_run / "evaluations").iterdir()) == evaluations
    assert (tmp_path / "eval-logging" / "report.html").is_file() and _status(tmp_path / "eval-logging") == "KILLED"
    after = client.get_run(record["run_id"])
    assert (after.info.status, after.data.metrics, after.data.params) == (
        before.info.status,
        before.data.metrics,
        before.data.params,
    )
    stopped = client.search_runs(
        [before.info.experiment_id], f"tags.`cadft.evaluates` = '{record['run_id']}' and attributes.status = 'KILLED'"
    )
    assert len(stopped) >= 2  # (other tests evaluate the session run too, FINISHED)
    # predict: no CSV, no temporary file
    assert not (tmp_path / "risks.csv").exists() and not list(tmp_path.glob(".risks.csv*"))
    # baselines: the run being logged ended KILLED, the next one was never opened
    assert (
        _status(baselines_dir / "logistic") == "KILLED" and not (baselines_dir / "oracle" / "mlflow_run.json").exists()
    )
