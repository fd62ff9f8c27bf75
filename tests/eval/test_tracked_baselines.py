"""cadft baselines: the classical models and the oracle on the run's split and terms, logged as MLflow runs."""

from __future__ import annotations

import json
import subprocess

import mlflow

from cadft.config import CONF_DIR
from cadft.config.validate import load_group_file
from cadft.eval.baselines.incremental import COMBINATIONS
from cadft.eval.baselines.run import CLASSICAL
from tests.conftest import CADFT

DEFAULT = tuple(load_group_file(CONF_DIR / "baselines" / "default.yaml", "baselines").which)
# What `cadft baselines` runs of them: every classical baseline and the zero-shot backbone; the combinations with the
# language model (logistic+llm, pce+llm) need its scores, which only cadft train and cadft eval have.
BASELINES = tuple(name for name in DEFAULT if name not in COMBINATIONS)


def test_baselines_cli(synthetic_cohort, prepared_dir, tmp_path):
    assert (*CLASSICAL, "zero_shot", *COMBINATIONS) == DEFAULT
    extract, oracle = synthetic_cohort
    out = tmp_path / "out"
    done = subprocess.run(
        [
            *CADFT,
            "baselines",
            "backbone=tiny",
            f"data.path={extract}",
            f"data.oracle_path={oracle}",
            f"paths.output_dir={out}",
            f"paths.prepared_dir={prepared_dir}",
            "eval.bootstrap=50",
            "eval.plots=false",
            "text.features=[age,sex,cholesterol,hdl,smoking]",
            "train.max_train_examples=300",
            "train.subsample=all_cases",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(name in done.stdout for name in (*BASELINES, "oracle")) and "val AUROC" in done.stdout
    assert "cadft baselines on hard_cad_incident10" in done.stdout  # the program as invoked: the front door
    run_dir = next((out / "baselines").glob("*/*"))
    metrics = {name: json.loads((run_dir / name / "metrics.json").read_text()) for name in (*BASELINES, "oracle")}
    assert metrics["oracle"]["baseline"]["name"] == "oracle" and metrics["oracle"]["test"]["auroc"] > 0.6
    # equal terms: the training run's text features and its 300 case-enriched training records
    assert metrics["logistic"]["baseline"]["features"] == ["age", "sex", "cholesterol", "hdl", "smoking"]
    assert metrics["logistic"]["baseline"]["train_records"] == metrics["lightgbm"]["baseline"]["train_records"] == 300
    assert (
        metrics["logistic_all"]["baseline"]["train_records"] > 1000
        and len(metrics["logistic_all"]["baseline"]["features"]) > 20
    )
    for name in ("logistic", "lightgbm"):  # recalibrated on validation: the mean risk is near the observed rate
        assert 0.5 < metrics[name]["test"]["oe_ratio"] < 2, name
    # the Cox model: logistic's features and records, with their follow-up; every model measured on the follow-up too
    assert metrics["cox"]["baseline"]["features"] == metrics["logistic"]["baseline"]["features"]
    assert metrics["cox"]["baseline"]["train_records"] == 300 and metrics["cox"]["test"]["auroc"] > 0.6
    assert metrics["cox"]["baseline"]["tuned"]["penalizer"] in (0.001, 0.01, 0.1)
    for name, block in metrics.items():
        survival = block["test"]["survival"]
        assert survival["participants"] == block["test"]["n"], name
        assert name == "zero_shot" or 0.6 < survival["uno_c"] < 1, name  # (the tiny backbone knows nothing)
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["hard_cad_incident10"], output_format="list")
    kinds = sorted((r.data.tags["kind"], r.data.tags["baseline"]) for r in runs)
    assert kinds == sorted([("baseline", name) for name in BASELINES] + [("oracle", "oracle")])
    assert all("test/auroc" in r.data.metrics and "validation/auroc" in r.data.metrics for r in runs)
