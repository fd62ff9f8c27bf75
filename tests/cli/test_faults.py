"""Runs that start together, runs that are stopped, disks that are full, through the real commands
(tests/phase_probe.py holds a command in a phase until the test signals it, or fails one writer as a full disk does;
cadft has no test hook):

- four `cadft train` started at the same moment on a new default store (outputs/mlflow.db of a fresh output dir): one
  left to finish, one stopped with SIGTERM while it scores, one with SIGINT while it logs, one whose disk fills while
  it saves the model. All four are recorded (the issue's race lost two of three runs and could break the store), the
  stopped ones KILLED, the full one FAILED with one line and no model/ folder (it used to keep one with a README);
- the run stopped while scoring is refused by predict with the command that finishes it, and `cadft eval RUN
  --finish` writes its calibrator and metrics, its status staying KILLED;
- `cadft eval` (stopped while scoring, and while logging; its disk full while writing the report), `cadft predict`
  (stopped while scoring) and `cadft baselines` (stopped while logging), started together: exit 128 + the signal (2
  for the full disk) with one line, their MLflow runs KILLED (FAILED), the training run untouched, no half report,
  CSV or temporary file;
- a really full disk (a small tmpfs, in a user namespace where the platform allows one; else the writer fails as
  one): predict's CSV, prepare's cache entry and a new tracking store are one line with the path and ENOSPC.
(SIGTERM during training steps: tests/tracking/test_session.py.)
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from mlflow import MlflowClient

from cadft.cli.eval import main as eval_main
from tests.conftest import REPO, TINY_TRAINING

PROBE = REPO / "tests" / "phase_probe.py"
SCORING = "cadft.eval.run:score_records"  # train and eval score validation and test here
LOGGING = "cadft.tracking.session:log_artifacts"  # every command's upload of its files to its MLflow run
STOPPED = "stopped by signal {} (nothing half-written was left)"


def _start(command: list[str], cwd: Path, **probe: str) -> subprocess.Popen:
    """The real `cadft COMMAND` through tests/phase_probe.py, with its probe settings (CADFT_PROBE_*)."""
    return subprocess.Popen(
        [sys.executable, str(PROBE), *command],
        cwd=cwd,
        env=os.environ | {"PYTHONPATH": str(REPO)} | {f"CADFT_PROBE_{key.upper()}": v for key, v in probe.items()},
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


def _last_line(err: str) -> str:
    return err.strip().splitlines()[-1] if err.strip() else ""


def _status(record_dir: Path) -> str:
    record = json.loads((record_dir / "mlflow_run.json").read_text())
    return MlflowClient(record["tracking_uri"]).get_run(record["run_id"]).info.status


@pytest.fixture(scope="module")
def trainings(synthetic_cohort, prepared_dir, tmp_path_factory):
    """Four trainings started together on a new default store: finished, stopped while scoring (SIGTERM), stopped
    while logging (SIGINT), disk full while saving the model; their (exit status, stderr) by name, and the root."""
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
    probes = {
        "finished": {},
        "scoring": {"wait": SCORING, "marker": str(root / "scoring.marker")},
        "logging": {"wait": LOGGING, "marker": str(root / "logging.marker")},
        "disk_full": {"fail": "peft.peft_model:safe_save_file", "fail_if": "/model/"},  # the model's adapter, not a
        # checkpoint's: peft has written model/README.md and adapter_config.json by then
    }
    processes = {
        name: _start([*common, f"hydra.run.dir={root / name}"], root, **probe) for name, probe in probes.items()
    }
    _signal_when_waiting(processes["scoring"], root / "scoring.marker", signal.SIGTERM)
    _signal_when_waiting(processes["logging"], root / "logging.marker", signal.SIGINT)
    return root, {name: _finish(process) for name, process in processes.items()}


@pytest.mark.slow
def test_trainings_started_together_on_a_new_store_are_all_recorded(trainings):
    root, results = trainings
    assert results["finished"][0] == 0, results["finished"][1][-3000:]
    client = MlflowClient(f"sqlite:///{root / 'outputs' / 'mlflow.db'}")
    runs = {
        Path(run.data.tags["cadft.run_dir"]).name: run.info.status
        for run in client.search_runs([e.experiment_id for e in client.search_experiments()])
    }
    assert runs == {"finished": "FINISHED", "scoring": "KILLED", "logging": "KILLED", "disk_full": "FAILED"}
    with sqlite3.connect(root / "outputs" / "mlflow.db") as db:  # no half-done migration left behind
        assert not db.execute("SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp_%'").fetchall()


@pytest.mark.slow
def test_a_training_stopped_while_scoring_ends_killed_and_is_finished_by_eval(
    trainings, synthetic_cohort, tmp_path, capsys
):
    root, results = trainings
    code, err = results["scoring"]
    run = root / "scoring"
    assert code == 128 + signal.SIGTERM and _last_line(err) == "cadft train: " + STOPPED.format("SIGTERM"), err[-3000:]
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
    assert code == 128 + signal.SIGINT and _last_line(err) == "cadft train: " + STOPPED.format("SIGINT"), err[-3000:]
    assert _status(root / "logging") == "KILLED"
    # Scored and saved whole before it logged: a complete run, whose MLflow record says it was stopped.
    assert (root / "logging" / "model" / "calibrator.json").is_file()
    assert (root / "logging" / "eval" / "metrics.json").is_file()


@pytest.mark.slow
def test_a_training_whose_disk_fills_while_saving_the_model_leaves_no_model(trainings):
    root, results = trainings
    code, err = results["disk_full"]
    model = root / "disk_full" / "model"
    assert code == 2 and _last_line(err) == (
        f"cadft train: error: {model}: No space left on device (ENOSPC); free space there, or write elsewhere "
        "(paths.output_dir, out=, --out)"
    ), err[-3000:]
    assert "Traceback" not in err and not model.exists()  # not a model/ with a README and no weights
    assert _status(root / "disk_full") == "FAILED"


@pytest.mark.slow
def test_eval_predict_and_baselines_stopped_in_each_phase(tiny_run, synthetic_cohort, prepared_dir, tmp_path):
    extract, oracle = synthetic_cohort
    record = json.loads((tiny_run / "mlflow_run.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    before = client.get_run(record["run_id"])
    evaluations = set((tiny_run / "evaluations").iterdir()) if (tiny_run / "evaluations").is_dir() else set()
    killed, failed = _evaluations(client, before, "KILLED"), _evaluations(client, before, "FAILED")
    baselines_dir = tmp_path / "baselines"
    baselines = [
        "baselines",
        "backbone=tiny",
        f"data.path={extract}",
        f"data.oracle_path={oracle}",
        f"paths.output_dir={tmp_path / 'outputs'}",
        f"paths.prepared_dir={prepared_dir}",
        f"hydra.run.dir={baselines_dir}",
        *TINY_TRAINING,
    ]
    predict = ["predict", f"run={tiny_run}", f"data.path={extract}", f"out={tmp_path / 'risks.csv'}"]
    plans = {  # name: (command, function waited in, signal)
        "eval_scoring": (["eval", str(tiny_run)], SCORING, signal.SIGTERM),
        "eval_logging": (["eval", str(tiny_run), "--out", str(tmp_path / "eval_logging")], LOGGING, signal.SIGINT),
        "predict_scoring": (predict, "cadft.eval.score:score_texts", signal.SIGTERM),
        "baselines_logging": (baselines, LOGGING, signal.SIGINT),
    }
    processes = {
        name: _start(command, tmp_path, wait=wait, marker=str(tmp_path / f"{name}.marker"))
        for name, (command, wait, _) in plans.items()
    }
    full = _start(
        ["eval", str(tiny_run), "--out", str(tmp_path / "eval_full")], tmp_path, fail="cadft.eval.report:write_html"
    )
    for name, (_, _, signum) in plans.items():
        _signal_when_waiting(processes[name], tmp_path / f"{name}.marker", signum)
    for name, process in processes.items():
        code, err = _finish(process)
        signum = plans[name][2]
        assert code == 128 + signum and _last_line(err).endswith(STOPPED.format(signum.name)), (name, err[-3000:])

    # eval: stopped while scoring, no report left; while logging, its report is whole (written before) and its run
    # KILLED, as a training run stopped while logging; the training run as training left it
    assert set((tiny_run / "evaluations").iterdir()) == evaluations
    assert (tmp_path / "eval_logging" / "report.html").is_file() and _status(tmp_path / "eval_logging") == "KILLED"
    assert _evaluations(client, before, "KILLED") == killed + 2
    # eval on a full disk: one line naming its folder, nothing left there, its run FAILED
    code, err = _finish(full)
    assert code == 2 and _last_line(err).startswith(
        f"cadft eval: error: {tmp_path / 'eval_full'}: No space left on device (ENOSPC)"
    ), err[-3000:]
    assert not (tmp_path / "eval_full").exists()
    assert _evaluations(client, before, "FAILED") == failed + 1
    after = client.get_run(record["run_id"])
    assert (after.info.status, after.data.metrics, after.data.params) == (
        before.info.status,
        before.data.metrics,
        before.data.params,
    )
    # predict: no CSV, no temporary file
    assert not (tmp_path / "risks.csv").exists() and not list(tmp_path.glob(".risks.csv*"))
    # baselines: the run being logged ended KILLED, the next one was never opened
    assert (
        _status(baselines_dir / "logistic") == "KILLED" and not (baselines_dir / "oracle" / "mlflow_run.json").exists()
    )


def _evaluations(client, training, status: str) -> int:
    """How many evaluations of `training` ended with `status`."""
    query = f"tags.`cadft.evaluates` = '{training.info.run_id}' and attributes.status = '{status}'"
    return len(client.search_runs([training.info.experiment_id], query))


@functools.cache
def _can_mount_tmpfs() -> bool:
    """Whether this platform lets a test mount a tmpfs in a user namespace of its own (unshare -Urm)."""
    if not shutil.which("unshare"):
        return False
    done = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=4k tmpfs "$d"'],
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


def _on_full_disk(command: list[str], mount: Path, size: str, cwd: Path, writer: str) -> tuple[int, str, list[str]]:
    """(exit status, stderr, what is left in `mount`) of `cadft COMMAND` with a `size` tmpfs mounted on `mount`
    (empty, made here) when the platform allows; else with `writer` failing as a full disk does
    (tests/phase_probe.py)."""
    mount.mkdir()
    argv = [sys.executable, str(PROBE), *command]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    if not _can_mount_tmpfs():
        done = subprocess.run(argv, cwd=cwd, env=env | {"CADFT_PROBE_FAIL": writer}, capture_output=True, text=True)
        return done.returncode, done.stderr, sorted(p.name for p in mount.iterdir())
    # The tmpfs lives as long as the namespace: what is left in it is listed from inside, after the command.
    script = (
        'mount -t tmpfs -o size="$1" tmpfs "$2" || exit 99; d="$2"; shift 2; "$@"; c=$?; echo LEFT; ls -A "$d"; exit $c'
    )
    done = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script, "sh", size, str(mount), *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 99, done.stderr
    return done.returncode, done.stderr, sorted(done.stdout.rsplit("LEFT\n", 1)[-1].split())


@pytest.fixture(scope="module")
def small_extract(synthetic_cohort, tmp_path_factory) -> Path:
    """The first 600 participants of the session cohort (prepared and scored in seconds)."""
    path = tmp_path_factory.mktemp("small") / "small.csv"
    pl.read_csv(synthetic_cohort[0], infer_schema=False, n_rows=600).write_csv(path, quote_style="always")
    return path


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_path_and_errno(tiny_run, small_extract, tmp_path):
    """predict's CSV, prepare's cache entry and a new tracking store, each on a disk too small for it."""
    full = "No space left on device (ENOSPC)"
    out = tmp_path / "predict" / "risks.csv"
    code, err, left = _on_full_disk(
        ["predict", f"run={tiny_run}", f"data.path={small_extract}", f"out={out}"],
        out.parent,
        "4k",
        tmp_path,
        "polars:DataFrame.write_csv",
    )
    assert code == 2 and _last_line(err) == (
        f"cadft predict: error: {out}: {full}; free space there, or write elsewhere (paths.output_dir, out=, --out)"
    ), err[-3000:]
    assert "Traceback" not in err and left == []  # no CSV, no temporary file

    prepared = tmp_path / "prepared"
    code, err, left = _on_full_disk(
        [
            "prepare",
            f"data.path={small_extract}",
            f"paths.output_dir={tmp_path / 'out'}",
            f"paths.prepared_dir={prepared}",
        ],
        prepared,
        "16k",
        tmp_path,
        "polars:DataFrame.write_parquet",
    )
    assert code == 2 and _last_line(err).startswith(f"cadft prepare: error: {prepared}"), err[-3000:]
    assert full in err and "Traceback" not in err
    assert set(left) <= {".extract_digests"}  # no cache entry, no staging folder

    if _can_mount_tmpfs():  # a store that cannot even be created: refused before the data is read
        store = tmp_path / "store"
        code, err, _ = _on_full_disk(
            [
                "train",
                "backbone=tiny",
                f"data.path={small_extract}",
                "data.oracle_path=null",
                f"paths.output_dir={store}",
            ]
            + [f"hydra.run.dir={tmp_path / 'run'}", f"paths.prepared_dir={tmp_path / 'prepared-train'}"],
            store,
            "128k",
            tmp_path,
            "",
        )
        assert code == 2 and _last_line(err).startswith(
            f"cadft train: error: tracking store {store / 'mlflow.db'}: No space left on device (ENOSPC; SQLite: "
            "database or disk is full)"
        ), err[-3000:]
        assert not (tmp_path / "prepared-train").exists()
