"""MLflow against a real `mlflow server` on 127.0.0.1: a tiny training run is logged and read back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cadft.tracking import flat_config
from cadft.train import run_training


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--default-artifact-root", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2).read()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("mlflow server did not answer /health within 90 s")
            time.sleep(0.5)
    yield uri
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


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
    assert run.data.tags["strategy"] == "lora" and run.data.tags["backbone"] == "tiny" and len(run.data.tags["data_hash"]) == 12
    assert run.data.params["model.lora.r"] == "16" and run.data.params["imbalance.applied.method"] == "weighted"
    assert set(flat_config(cfg)) <= set(run.data.params)
    history = client.get_metric_history(run.info.run_id, "train/loss_weighted")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert "test/auroc" in run.data.metrics and "val/auroc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for folder in ("config", "eval", "model") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"config/config.yaml", "config/data_card.json", "eval/metrics.json", "eval/predictions.jsonl", "model/adapter_config.json"} <= artifacts
    uploaded = client.download_artifacts(run.info.run_id, "eval/predictions.jsonl", str(tmp_path))
    assert '"eid"' not in Path(uploaded).read_text()  # a server gets predictions without eids unless tracking.log_eids=true
