"""MLflow against a real `mlflow server` on 127.0.0.1: a tiny training run is logged and read back; a server that
goes away mid-run, then cadft sync; runs that are stopped or fail end KILLED or FAILED, never RUNNING."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cadft.config.typecheck import plain
from cadft.tracking import session as tracking
from cadft.tracking.names import flat_config
from cadft.tracking.store import offline_uri
from cadft.tracking.sync import sync
from cadft.train import trainer as trainer_module
from cadft.train.run import run_training
from tests.conftest import CADFT, REPO, TINY_TRAINING
from tests.fault_probe import Fail

PROBED_CLI = REPO / "tests" / "probed_cli.py"  # `cadft train` with the fault probes named in CADFT_TEST_CALLBACKS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(store: Path, port: int) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:port over the SQLite store, artifacts beside it; returns once /health answers."""
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{store}",
            "--default-artifact-root",
            str(store.parent / "server-artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        start_new_session=True,
    )
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return server
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                _stop_server(server)
                pytest.fail("mlflow server did not answer /health within 90 s")
            time.sleep(0.5)


def _stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    server = _start_server(tmp_path / "server.db", port)
    yield f"http://127.0.0.1:{port}"
    _stop_server(server)


@pytest.mark.slow
def test_training_logs_to_a_running_server(train_config, tmp_path, mlflow_server):
    cfg = train_config(f"tracking.uri={mlflow_server}")
    run_training(cfg, tmp_path / "run")
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("hard_cad_incident10")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert (
        run.data.tags["strategy"] == "lora"
        and run.data.tags["backbone"] == "tiny"
        and len(run.data.tags["data_hash"]) == 12
    )
    assert run.data.params["model.lora.r"] == "16" and run.data.params["imbalance.applied.method"] == "weighted"
    assert set(flat_config(plain(cfg))) <= set(run.data.params)
    history = client.get_metric_history(run.info.run_id, "train/loss_weighted")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert "test/auroc" in run.data.metrics and "val/auroc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for folder in ("config", "eval", "model") for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert {
        "config/config.yaml",
        "config/data_card.json",
        "eval/metrics.json",
        "eval/predictions.jsonl",
        "model/adapter_config.json",
    } <= artifacts
    uploaded = client.download_artifacts(run.info.run_id, "eval/predictions.jsonl", str(tmp_path))
    assert (
        '"eid"' not in Path(uploaded).read_text()
    )  # a server gets predictions without eids unless tracking.log_eids=true


def _train_cli(synthetic_cohort, prepared_dir, tmp_path, run_dir: Path, *overrides: str, callback: str, **env: str):
    """The real `cadft train` on the tiny backbone with a fault probe (tests/fault_probe.py), run by
    tests/probed_cli.py."""
    extract, oracle = synthetic_cohort
    command = [
        sys.executable,
        str(PROBED_CLI),
        "backbone=tiny",
        f"data.path={extract}",
        f"data.oracle_path={oracle}",
        f"paths.output_dir={tmp_path / 'outputs'}",
        f"paths.prepared_dir={prepared_dir}",
        f"hydra.run.dir={run_dir}",
        *TINY_TRAINING,
        *overrides,
    ]
    environment = os.environ | {"PYTHONPATH": str(REPO), "CADFT_TEST_CALLBACKS": f"tests.fault_probe:{callback}"} | env
    return subprocess.Popen(
        command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_training_goes_on_when_the_server_goes_away(synthetic_cohort, prepared_dir, make_config, tmp_path):
    port, store, run_dir = _free_port(), tmp_path / "server.db", tmp_path / "run"
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(store, port)
    training = _train_cli(
        synthetic_cohort,
        prepared_dir,
        tmp_path,
        run_dir,
        "train.max_steps=6",
        f"tracking.uri={uri}",
        callback="KillServer",
        CADFT_SERVER_PID=str(server.pid),
    )
    out, err = training.communicate(timeout=600)
    server.wait(timeout=30)  # killed at step 2
    assert training.returncode == 0, err[-3000:]
    assert f"send it to the server later with: cadft sync {run_dir}" in out + err
    assert (run_dir / "model" / "cadft_model.json").is_file() and (run_dir / "eval" / "metrics.json").is_file()
    record = json.loads((run_dir / "mlflow_run.json").read_text())
    assert record["offline"]["synced"] is False and record["run_id"] == record["offline"]["server_run_id"]
    local = MlflowClient(offline_uri(run_dir)).get_run(record["offline"]["run_id"])
    assert (
        local.info.status == "FINISHED"
        and "test/auroc" in local.data.metrics
        and local.data.params["model.lora.r"] == "16"
    )

    # A second run while the server is down, from its start: measures the bounded retries before going offline.
    never_seen = tmp_path / "never_seen"
    cfg = make_config(f"tracking.uri={uri}")
    started = time.perf_counter()
    tracking.start_run(cfg.tracking, cfg.paths, never_seen, {"kind": "llm"})
    offline_after = time.perf_counter() - started
    tracking.log_params({"seed": 7})
    tracking.log_metrics({"val/auroc": 0.5}, step=3)
    tracking.end_run()
    assert (
        offline_after < 60
    )  # ~3 s of retries, then the offline store is created (~10 s on 2 busy cores); MLflow's defaults: ~4 min

    server = _start_server(store, port)  # back, on the same store
    try:
        done = subprocess.run(
            [*CADFT, "sync", str(run_dir)],
            capture_output=True,
            text=True,
            env=os.environ | {"PYTHONPATH": str(REPO)},
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert (
            f"synced {run_dir} to run {record['run_id']} at {uri}: " in done.stdout
        )  # after MLflow's "View run" links
        client = MlflowClient(uri)
        run = client.get_run(record["run_id"])
        assert (
            run.info.status == "FINISHED"
            and run.data.params["model.lora.r"] == "16"
            and run.data.tags["strategy"] == "lora"
        )
        assert run.data.metrics["test/auroc"] == pytest.approx(
            json.loads((run_dir / "eval" / "metrics.json").read_text())["test"]["auroc"]
        )
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss_weighted")] == [1, 2, 3, 4, 5, 6]
        assert {a.path for a in client.list_artifacts(run.info.run_id, "eval")} >= {
            "eval/metrics.json",
            "eval/predictions.jsonl",
        }
        assert (
            '"eid"'
            not in Path(client.download_artifacts(run.info.run_id, "eval/predictions.jsonl", str(tmp_path))).read_text()
        )
        assert sync(run_dir) is None  # synced already: nothing sent twice
        assert len(client.get_metric_history(run.info.run_id, "train/loss_weighted")) == 6

        sent = sync(never_seen)  # the server never saw this one: a new run
        assert sent["new_run"] and json.loads((never_seen / "mlflow_run.json").read_text())["run_id"] == sent["run_id"]
        new = client.get_run(sent["run_id"])
        assert (
            new.info.status == "FINISHED"
            and new.data.params == {"seed": "7"}
            and new.data.metrics == {"val/auroc": 0.5}
        )
        assert new.info.experiment_id == run.info.experiment_id and new.data.tags["kind"] == "llm"
    finally:
        _stop_server(server)


def _status(run_dir: Path, store: Path) -> str:
    run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    return MlflowClient(f"sqlite:///{store}").get_run(run_id).info.status


@pytest.mark.slow
def test_stopped_runs_end_killed_and_failed_runs_failed(
    synthetic_cohort, prepared_dir, train_config, tmp_path, monkeypatch
):
    stopped, marker = tmp_path / "stopped", tmp_path / "at_step_2"
    training = _train_cli(
        synthetic_cohort,
        prepared_dir,
        tmp_path,
        stopped,
        "train.max_steps=6",
        callback="WaitForSignal",
        CADFT_FAULT_MARKER=str(marker),
    )
    deadline = time.time() + 300
    while not marker.exists() and training.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    training.send_signal(signal.SIGTERM)
    _, err = training.communicate(timeout=120)
    assert training.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert err.strip().splitlines()[-1] == "cadft train: stopped by signal SIGTERM (nothing half-written was left)"
    assert _status(stopped, tmp_path / "outputs" / "mlflow.db") == "KILLED"

    class FailingTrainer(trainer_module.CadftTrainer):  # the in-process run's trainer, with the Fail probe added
        def __init__(self, *args, callbacks=None, **kwargs):
            super().__init__(*args, callbacks=[*(callbacks or []), Fail()], **kwargs)

    monkeypatch.setattr(trainer_module, "CadftTrainer", FailingTrainer)
    cfg = train_config()
    with pytest.raises(RuntimeError, match="a fault injected at step 2"):
        run_training(cfg, tmp_path / "failed")
    assert _status(tmp_path / "failed", Path(cfg.paths.output_dir) / "mlflow.db") == "FAILED"


def test_sync_says_what_is_wrong(tmp_path):
    def sync_cli(run_dir: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CADFT, "sync", str(run_dir)],
            capture_output=True,
            text=True,
            env=os.environ | {"PYTHONPATH": str(REPO)},
            timeout=120,
        )

    done = sync_cli(tmp_path)
    assert (
        done.returncode == 2
        and done.stderr.strip() == f"cadft sync: error: {tmp_path}: not a cadft run dir (mlflow_run.json is missing)"
    )
    (tmp_path / "mlflow_run.json").write_text(json.dumps({"run_id": "0" * 32, "tracking_uri": "http://127.0.0.1:9"}))
    done = sync_cli(tmp_path)
    assert done.returncode == 2
    assert (
        done.stderr.strip() == f"cadft sync: error: {tmp_path}: nothing recorded offline here "
        f"(no 'offline' entry in {tmp_path / 'mlflow_run.json'})"
    )
