"""cadft-baselines: the classical models and the oracle on the training split, logged as MLflow runs."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow


def test_baselines_cli(synthetic_cohort, prepared_dir, tmp_path):
    extract, oracle = synthetic_cohort
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "cadft.baselines_cli", "backbone=tiny", f"data.path={extract}", f"data.oracle_path={oracle}",
         f"paths.output_dir={out}", f"paths.prepared_dir={prepared_dir}", "eval.bootstrap=50", "eval.plots=false"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.split() and line.split()[0] in ("logistic", "lightgbm", "pce", "oracle")}
    assert set(rows) == {"logistic", "lightgbm", "pce", "oracle"}
    run_dir = next((out / "baselines").glob("*/*"))
    oracle_metrics = json.loads((run_dir / "oracle" / "metrics.json").read_text())
    assert oracle_metrics["baseline"]["name"] == "oracle" and oracle_metrics["test"]["auroc"] > 0.6
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["hard_cad_incident10"], output_format="list")
    kinds = sorted((r.data.tags["kind"], r.data.tags["baseline"]) for r in runs)
    assert kinds == [("baseline", "lightgbm"), ("baseline", "logistic"), ("baseline", "pce"), ("oracle", "oracle")]
    assert all("test/auroc" in r.data.metrics for r in runs)
